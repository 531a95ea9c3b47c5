"""A small cache for answers that are costly to compute and fine a few minutes old (the
admin dashboard's 30-day charts), shared by every node through Redis when
``HOLDFAST_REDIS_URL`` is set, and kept in the process's memory otherwise.

Nothing a session check depends on is ever cached: every request still reads its session
row (revocation holds on the very next request). Values are JSON. The cache is best
effort: when Redis does not answer, a read is a miss and a write is dropped, so the
caller computes the answer itself and nothing fails; the in-process cache holds at most
``max_entries`` values and forgets the oldest first.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Cache(Protocol):
    def get(self, key: str) -> Any | None: ...

    def set(self, key: str, value: Any, *, seconds: int) -> None: ...


def remembered(cache: Cache, key: str, seconds: int, compute: Callable[[], Any]) -> Any:
    """The cached value of ``key``, or ``compute()`` stored for ``seconds``."""
    found = cache.get(key)
    if found is not None:
        return found
    value = compute()
    cache.set(key, value, seconds=seconds)
    return value


class MemoryCache:
    """In this process only, at most ``max_entries`` values (the oldest written goes
    first), each until its time is up (``time.monotonic``)."""

    def __init__(self, max_entries: int = 1024) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= time.monotonic():
                del self._entries[key]
                return None
        # Stored as JSON, like Redis: a caller can never change a cached value in place.
        return json.loads(entry[1])

    def set(self, key: str, value: Any, *, seconds: int) -> None:
        encoded = json.dumps(value)
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = (time.monotonic() + seconds, encoded)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class RedisCache:
    """In Redis, shared by every node (keys under ``prefix``, each with its expiry).

    After Redis fails to answer, it is not asked again for :attr:`PAUSE` seconds: each
    request would otherwise wait out the timeouts before computing its answer anyway."""

    PAUSE = 30.0

    def __init__(self, url: str, *, prefix: str = "holdfast:cache:") -> None:
        import redis

        self.prefix = prefix
        # Short timeouts: a cache that waits longer than the work it saves is no help.
        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._error: type[Exception] = redis.RedisError
        self._paused_until = 0.0

    def get(self, key: str) -> Any | None:
        if time.monotonic() < self._paused_until:
            return None
        try:
            found = self._redis.get(self.prefix + key)
            return None if found is None else json.loads(found)
        except self._error:
            self._pause("cache read failed; computing instead")
        except ValueError:  # not a value this cache wrote
            log.warning("cache value of %s unreadable; computing instead", key)
        return None

    def set(self, key: str, value: Any, *, seconds: int) -> None:
        if time.monotonic() < self._paused_until:
            return
        try:
            self._redis.set(self.prefix + key, json.dumps(value), ex=seconds)
        except self._error:
            self._pause("cache write failed; not cached")

    def _pause(self, message: str) -> None:
        self._paused_until = time.monotonic() + self.PAUSE
        log.warning("%s (Redis not asked again for %.0f s)", message, self.PAUSE, exc_info=True)


#: URL schemes redis-py's ``Redis.from_url`` takes (with another, the cache stays in each
#: process and rate limits are counted in the database: app.ratelimit)
CACHE_SCHEMES = ("redis://", "rediss://", "unix://")


def cache_from_url(redis_url: str | None) -> Cache:
    if not redis_url:
        return MemoryCache()
    if redis_url.startswith(CACHE_SCHEMES):
        return RedisCache(redis_url)
    log.warning(
        "HOLDFAST_REDIS_URL %s is not one the cache can use (%s): admin charts are cached "
        "in each process",
        redis_url.split("://", 1)[0] + "://…",
        ", ".join(CACHE_SCHEMES),
    )
    return MemoryCache()
