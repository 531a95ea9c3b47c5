"""The demo tenant's data: an admin and a member to sign in as, and, on request, made-up
people, devices and sessions in bulk (written with Core executemany in batches: no ORM
objects, no per-row events, so a million sessions take about a minute). ``holdfast
demo`` and the benchmarks use it."""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Engine, func, insert, select

from app.models import Device, Event, Tenant, User, UserSession, new_id
from app.user_agents import describe

DEMO_ADMIN = "admin@demo.holdfast.test"

DEMO_MEMBER = "sam@demo.holdfast.test"

#: the browsers and apps the demo people use, with how common each is (kind, OS and
#: browser come from the same parser real sign-ins go through)
DEMO_AGENTS = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36": 26,
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36": 14,
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0": 9,
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15": 7,
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0": 5,
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0": 4,
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1": 16,
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Mobile Safari/537.36": 11,
    "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36": 3,
    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1": 4,
    "holdfast-sync/2.3": 1,
}

DEMO_PLACES = (
    "Berlin, DE",
    "London, GB",
    "Lisbon, PT",
    "Toronto, CA",
    "Austin, US",
    "Sydney, AU",
    "Nairobi, KE",
    None,
    None,
    None,
)

DEMO_NETWORKS = ("10.20.", "192.0.2.", "198.51.100.", "203.0.113.", "172.16.")

DEMO_NAMES = (
    "Ada",
    "Ben",
    "Chen",
    "Dana",
    "Eli",
    "Farah",
    "Gus",
    "Hana",
    "Ivo",
    "Jun",
    "Kemi",
    "Lena",
    "Mo",
    "Nia",
    "Omar",
    "Pia",
    "Quinn",
    "Rosa",
    "Sami",
    "Tove",
)

#: (weight, end reason) of the ended demo sessions
DEMO_ENDINGS = (
    (45, "idle_expired"),
    (25, "logout"),
    (15, "lifetime_expired"),
    (7, "revoked_by_user"),
    (5, "limit_evicted"),
    (3, "revoked_by_admin"),
)

DEMO_HISTORY_DAYS = 90

#: share of the demo sessions that are live now
DEMO_LIVE_SHARE = 0.02

BATCH = 10_000


@dataclass
class Seeded:
    users: int = 0
    devices: int = 0
    sessions: int = 0
    seconds: float = 0.0


#: a session rule of app.core.sessions (``idle_timeout``, ``lifetime``): how long the
#: tenant's policy (its row) lets a session on a device (id, trusted_until) run at ``now``
PolicyRule = Callable[[Any, Any, datetime], timedelta]


class DemoDevice(NamedTuple):
    """What the session rules read of a device."""

    id: str
    trusted_until: datetime | None

    def is_trusted(self, now: datetime) -> bool:
        return self.trusted_until is not None and self.trusted_until > now


def seed_bulk(
    engine: Engine,
    tenant_id: str,
    *,
    now: datetime,
    users: int,
    sessions: int,
    idle_timeout: PolicyRule,
    lifetime: PolicyRule,
    seed: int = 1,
    echo: Callable[[str], Any] = print,
) -> Seeded:
    """Make sure tenant ``tenant_id`` holds at least ``users`` people and ``sessions``
    sessions; add only what is missing, so running it again adds nothing. The demo admin
    gets no made-up sessions (their own device list stays theirs). Commits per batch: an
    interrupted run resumes where it stopped. The sessions' deadlines are the ones the
    tenant's policy gives real ones: the caller hands in the core's rules
    (app.core.sessions.idle_timeout and lifetime; this store module cannot import the
    core)."""
    started = time.perf_counter()
    rng = random.Random(seed)  # noqa: S311 (made-up data, not secrets)
    writer = engine.execution_options(holdfast_write=True)
    done = Seeded()
    with writer.connect() as conn:
        if engine.dialect.name == "sqlite":
            # A big page cache keeps the indexes' hot pages in memory while rows pour in.
            conn.exec_driver_sql("PRAGMA cache_size=-262144")
        have = conn.scalar(
            select(func.count()).select_from(User).where(User.tenant_id == tenant_id)
        )
        for first in range(have or 0, users, BATCH):
            rows = [
                _demo_person(rng, tenant_id, number, now)
                for number in range(first, min(users, first + BATCH))
            ]
            conn.execute(insert(User), rows)
            conn.commit()
            done.users += len(rows)
        people = (
            conn.execute(
                select(User.id).where(User.tenant_id == tenant_id, User.email != DEMO_ADMIN)
            )
            .scalars()
            .all()
        )
        with_device = set(
            conn.execute(
                select(Device.user_id).where(Device.tenant_id == tenant_id).distinct()
            ).scalars()
        )
        bare = [person for person in people if person not in with_device]
        for first in range(0, len(bare), BATCH):
            rows = [
                device
                for person in bare[first : first + BATCH]
                for device in _demo_devices(rng, tenant_id, person, now)
            ]
            conn.execute(insert(Device), rows)
            conn.commit()
            done.devices += len(rows)
        if done.users or done.devices:
            echo(f"  {done.users} people, {done.devices} devices")
        have = (
            conn.scalar(
                select(func.count())
                .select_from(UserSession)
                .where(UserSession.tenant_id == tenant_id)
            )
            or 0
        )
        missing = max(0, sessions - have)
        if missing and people:
            # The sessions' deadlines follow the tenant's policy, as real ones do.
            policy = conn.execute(select(Tenant.__table__).where(Tenant.id == tenant_id)).one()
            # Each device's sessions carry the user agent that device was recognised from.
            by_look = {astuple(describe(agent)): agent for agent in DEMO_AGENTS}
            devices: dict[str, list[tuple[DemoDevice, str]]] = {}
            for user_id, device_id, trusted_until, kind, os_name, browser in conn.execute(
                select(
                    Device.user_id,
                    Device.id,
                    Device.trusted_until,
                    Device.kind,
                    Device.os,
                    Device.browser,
                ).where(Device.tenant_id == tenant_id)
            ):
                agent = by_look.get((kind, os_name, browser), "")
                devices.setdefault(user_id, []).append(
                    (DemoDevice(device_id, trusted_until), agent)
                )
            owners = [person for person in people if person in devices]
            for first in range(0, missing, BATCH):
                rows = []
                for _ in range(min(BATCH, missing - first)):
                    person = rng.choice(owners)
                    device, agent = rng.choice(devices[person])
                    idle = idle_timeout(policy, device, now)
                    longest = lifetime(policy, device, now)
                    rows.append(
                        _demo_session(rng, tenant_id, person, device.id, agent, now, idle, longest)
                    )
                conn.execute(insert(UserSession), rows)
                conn.commit()
                done.sessions += len(rows)
                if done.sessions % 100_000 < BATCH:
                    echo(f"  {done.sessions} of {missing} sessions")
            failed = [
                _demo_failed_code(rng, tenant_id, rng.choice(owners), now)
                for _ in range(max(1, missing // 200))
            ]
            for first in range(0, len(failed), BATCH):
                conn.execute(insert(Event), failed[first : first + BATCH])
                conn.commit()
    done.seconds = time.perf_counter() - started
    return done


def _demo_person(rng: random.Random, tenant_id: str, number: int, now: datetime) -> dict:
    first, last = rng.choice(DEMO_NAMES), rng.choice(DEMO_NAMES)
    return {
        "id": new_id("usr"),
        "tenant_id": tenant_id,
        "role": "member",
        "disabled": False,
        "email": f"person{number:06d}@demo.holdfast.test",
        "name": f"{first} {last}son",
        "created_at": now - timedelta(days=DEMO_HISTORY_DAYS + rng.random() * 300),
        "last_sign_in_at": now - timedelta(hours=rng.random() * 24 * 30),
    }


def _demo_devices(rng: random.Random, tenant_id: str, user_id: str, now: datetime) -> list[dict]:
    agents = rng.choices(list(DEMO_AGENTS), list(DEMO_AGENTS.values()), k=rng.choice((1, 2, 3)))
    rows = []
    for number, agent in enumerate(agents):
        info = describe(agent)
        seen = now - timedelta(days=rng.random() * DEMO_HISTORY_DAYS)
        trusted = rng.random() < 0.3
        rows.append(
            {
                "id": new_id("dev"),
                "tenant_id": tenant_id,
                "user_id": user_id,
                "cookie_hash": secrets.token_hex(32),
                "name": f"Work {info.kind} {number + 1}" if rng.random() < 0.2 else None,
                "kind": info.kind,
                "os": info.os,
                "browser": info.browser,
                "first_seen_at": seen - timedelta(days=30),
                "last_seen_at": seen,
                "trusted_until": now + timedelta(days=rng.random() * 30) if trusted else None,
            }
        )
    return rows


def _demo_moment(rng: random.Random, now: datetime, within: timedelta) -> datetime:
    """A moment in the last ``within``, busier on weekdays and in working hours (UTC)."""
    while True:
        moment = now - within * rng.random()
        busy = (0.25 if moment.weekday() >= 5 else 1.0) * (1.0 if 7 <= moment.hour < 19 else 0.2)
        if rng.random() < busy:
            return moment


def _demo_session(
    rng: random.Random,
    tenant_id: str,
    user_id: str,
    device_id: str,
    agent: str,
    now: datetime,
    idle: timedelta,
    longest: timedelta,
) -> dict:
    """A made-up session on ``device_id``, live or ended, with the idle timeout and the
    lifetime the tenant's policy gives a real one on that device."""
    network = rng.choice(DEMO_NETWORKS)
    row = {
        "id": new_id("sess"),
        "tenant_id": tenant_id,
        "user_id": user_id,
        "device_id": device_id,
        "extend_on_activity": True,
        "user_agent": agent,
        "ip": f"{network}{rng.randrange(1, 255)}"
        + ("" if network.count(".") == 3 else f".{rng.randrange(1, 255)}"),
        "location": rng.choice(DEMO_PLACES),
    }
    if rng.random() < DEMO_LIVE_SHARE:
        created = now - longest * 0.9 * rng.random()
        seen = max(created, now - idle * 0.8 * rng.random())
        row.update(
            created_at=created,
            authenticated_at=created,
            last_seen_at=seen,
            idle_deadline=min(seen + idle, created + longest),
            absolute_deadline=created + longest,
            ended_at=None,
            end_reason=None,
        )
        return row
    created = _demo_moment(rng, now, timedelta(days=DEMO_HISTORY_DAYS))
    reason = rng.choices([r for _w, r in DEMO_ENDINGS], [w for w, _r in DEMO_ENDINGS])[0]
    if reason == "lifetime_expired":
        length = longest
    else:
        # Mostly minutes to a few hours, with a long tail of days on trusted devices.
        length = timedelta(minutes=min(60 * 24 * 20, rng.lognormvariate(3.6, 1.4)))
    ended = min(created + length, now - timedelta(minutes=1))
    seen = ended - idle if reason == "idle_expired" else ended
    seen = max(created, seen)
    row.update(
        created_at=created,
        authenticated_at=created,
        last_seen_at=seen,
        idle_deadline=seen + idle,
        absolute_deadline=created + max(length, longest),
        ended_at=ended,
        end_reason=reason,
    )
    return row


def _demo_failed_code(rng: random.Random, tenant_id: str, user_id: str, now: datetime) -> dict:
    return {
        "tenant_id": tenant_id,
        "kind": "code.failed",
        "subject_id": user_id,
        "at": _demo_moment(rng, now, timedelta(days=30)),
        "actor_id": None,
        "session_id": None,
        "ip": f"203.0.113.{rng.randrange(1, 255)}",
        "details": {"challenge_id": new_id("chl"), "attempts": rng.randrange(1, 6)},
    }
