"""Rate-limit budgets, counted where every worker process and node sees the same count.

A budget is a list of limits, each a number of uses in a fixed window
(``"5 per 10 minutes;20 per hour"``). :func:`spend` counts one use against each limit
and answers the seconds until the window that refused it ends, when any is over. What
asking for and checking codes may cost is the core's rule (app.core.budgets).

Counters live in the database by default (table ``rate_counters``, one row per key and
window, bumped by one ``INSERT … ON CONFLICT DO UPDATE … RETURNING``: atomic on SQLite
and on PostgreSQL, inside the caller's transaction), so a limit holds exactly across
gunicorn's workers and across nodes on the default install. With ``HOLDFAST_REDIS_URL``
they live in Redis (``INCR`` and ``EXPIRE`` in one round trip); while Redis does not
answer, they fall back to the database, never to one process's memory.
``holdfast purge`` deletes rows whose window is over.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import bindparam
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app import signals
from app.models import RateCounter

log = logging.getLogger(__name__)

UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_LIMIT = re.compile(
    r"^\s*(\d+)\s*(?:per|/)\s*(\d+)?\s*(second|minute|hour|day)s?\s*$", re.IGNORECASE
)


@dataclass(frozen=True)
class Limit:
    """At most ``uses`` in each window of ``seconds``."""

    uses: int
    seconds: int


def parse_limits(text: str) -> tuple[Limit, ...]:
    """``"5 per 10 minutes;20 per hour"`` (also ``5/minute``, ``,`` between limits).
    Raises ValueError naming the part it cannot read."""
    limits = []
    for part in re.split(r"[;,]", text or ""):
        if not part.strip():
            continue
        match = _LIMIT.match(part)
        if match is None:
            raise ValueError(
                f"{part.strip()!r} is not a limit: write it like '5 per 10 minutes' or "
                "'20 per hour', several separated by ';'"
            )
        uses, count, unit = match.groups()
        limits.append(Limit(int(uses), int(count or 1) * UNITS[unit.lower()]))
    if not limits:
        raise ValueError("a rate limit needs at least one 'N per period'")
    return tuple(limits)


class Counters(Protocol):
    def hit(self, db: Session, key: str, seconds: int, now: datetime) -> int:
        """Count one use of ``key`` in its ``seconds``-long window holding ``now``; the
        uses in that window so far, this one included."""
        ...


def window_start(seconds: int, now: datetime) -> int:
    return int(now.timestamp()) // seconds * seconds


class DatabaseCounters:
    """Counters in the database, in the caller's transaction (see the module docstring).
    The statement is built once per database kind: SQLAlchemy then finds its compiled
    form without building and keying a new one for each of the four hits a sign-in
    makes."""

    def __init__(self) -> None:
        self._statements: dict[str, Any] = {}

    def hit(self, db: Session, key: str, seconds: int, now: datetime) -> int:
        start = window_start(seconds, now)
        params = {
            "key": key,
            "start": start,
            "expires": datetime.fromtimestamp(start + seconds, UTC),
        }
        return int(db.execute(self._statement(db), params).scalar_one())

    def _statement(self, db: Session) -> Any:
        dialect = db.get_bind().dialect.name
        found = self._statements.get(dialect)
        if found is None:
            insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
            found = self._statements[dialect] = (
                insert(RateCounter)
                .values(
                    key=bindparam("key"),
                    window_start=bindparam("start"),
                    hits=1,
                    expires_at=bindparam("expires", type_=RateCounter.expires_at.type),
                )
                .on_conflict_do_update(
                    index_elements=[RateCounter.key, RateCounter.window_start],
                    set_={"hits": RateCounter.hits + 1},
                )
                .returning(RateCounter.hits)
            )
        return found


class RedisCounters:
    """Counters in Redis, shared by every node; the database's while Redis does not
    answer (it is then left alone for :attr:`PAUSE` seconds)."""

    PAUSE = 30.0

    def __init__(self, url: str, *, prefix: str = "holdfast:rate:") -> None:
        import redis

        self.prefix = prefix
        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._error: type[Exception] = redis.RedisError
        self._fallback = DatabaseCounters()
        self._paused_until = 0.0

    def hit(self, db: Session, key: str, seconds: int, now: datetime) -> int:
        if time.monotonic() >= self._paused_until:
            start = window_start(seconds, now)
            name = f"{self.prefix}{key}:{start}"
            try:
                pipe = self._redis.pipeline()
                pipe.incr(name)
                # Relative, so the key outlives its window whatever clock the app runs on.
                pipe.expire(name, seconds + 60)
                uses, _ = pipe.execute()
                return int(uses)
            except self._error:
                self._paused_until = time.monotonic() + self.PAUSE
                log.warning(
                    "Redis did not answer; rate limits are counted in the database for %.0f s",
                    self.PAUSE,
                    exc_info=True,
                )
        return self._fallback.hit(db, key, seconds, now)


#: URL schemes redis-py's ``Redis.from_url`` takes
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def counters_from_url(redis_url: str | None) -> Counters:
    if redis_url and redis_url.startswith(REDIS_SCHEMES):
        return RedisCounters(redis_url)
    if redis_url:
        log.warning(
            "HOLDFAST_REDIS_URL %s is not one redis-py takes (%s): rate limits are counted "
            "in the database",
            redis_url.split("://", 1)[0] + "://…",
            ", ".join(REDIS_SCHEMES),
        )
    return DatabaseCounters()


@dataclass(frozen=True)
class Budget:
    """A named list of limits, e.g. code requests per address."""

    name: str
    limits: tuple[Limit, ...]


def spend(db: Session, counters: Counters, budget: Budget, key: str, *, now: datetime) -> int:
    """Count one use of ``budget`` by ``key``: 0 when every limit still holds, else the
    seconds until the latest window that refused it ends (at least 1)."""
    wait = 0
    for limit in budget.limits:
        used = counters.hit(db, f"{budget.name}:{key}/{limit.seconds}", limit.seconds, now)
        if used > limit.uses:
            ends = window_start(limit.seconds, now) + limit.seconds
            wait = max(wait, ends - int(now.timestamp()))
    if wait:
        signals.rate_limited.send(db.info.get("database"), budget=budget.name)
    return max(1, wait) if wait else 0


def client_network(ip: str) -> str:
    """What a per-client budget is keyed by: an IPv4 address, or an IPv6 address's /64
    (one subscriber's network: a client holds a whole /64 and could walk through it)."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
