"""Looking a host name up with a timeout. The system's resolver (``getaddrinfo``) has
none of its own and cannot be interrupted: a resolver that does not answer holds it for
the system's retries, often half a minute. So a lookup runs in a daemon thread of its
own that the caller waits on for ``timeout`` at most and then leaves behind. A thread per
lookup rather than a pool: a pool's workers stuck on a dead resolver would make every
later lookup queue behind them. At most :data:`MAX_LOOKUPS` may be waiting at once, so a
flood of hanging lookups cannot pile up threads either: one past that fails at once.
Used by everything that reaches another server by name (the mail relay, webhook
endpoints)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

Resolver = Callable[..., list[Any]]

#: lookups that may be waiting on DNS at once, process-wide; past this, not found
MAX_LOOKUPS = 16
_lookups = threading.BoundedSemaphore(MAX_LOOKUPS)


def lookup(
    host: str, port: int, *, timeout: float, resolve: Resolver = socket.getaddrinfo
) -> list[str] | None:
    """The host's addresses, or None when it cannot be resolved within ``timeout``
    seconds (not found, too slow, or too many lookups already waiting)."""
    if not _lookups.acquire(blocking=False):
        return None
    answers: list[list[Any]] = []

    def ask() -> None:
        try:
            answers.append(resolve(host, port, type=socket.SOCK_STREAM))
        except Exception:  # noqa: S110 (any failure is "not found"; the waiter says so)
            pass
        finally:
            _lookups.release()

    thread = threading.Thread(target=ask, name="holdfast-dns", daemon=True)
    thread.start()
    thread.join(timeout)
    if not answers:
        return None
    addresses = list(dict.fromkeys(info[4][0] for info in answers[0]))
    return addresses or None
