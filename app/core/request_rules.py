"""The security rules on the request path, run by the session check
(app.core.session_check) only when something is off, so a request whose session is live
and whose address and browser match the session's pays nothing for them:

* an ended session's token used again after its device was told (a replay);
* a session's IP address, or its browser or OS family, changing mid-session, per the
  tenant's binding policy (``allow``, ``flag``: alert once, ``end``: end the session).

A rule that fires once per session remembers, in this process, that it did (a bounded
set), so later requests cost no query.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.core.alerts import raise_alert
from app.core.errors import InvalidSession
from app.core.events import Origin
from app.core.sessions import END_MESSAGES, Current, end_session
from app.models import UserSession
from app.user_agents import describe

#: uses of an ended token this soon after its device was told are that device (parallel
#: requests, other tabs), not a replay
REPLAY_GRACE = timedelta(seconds=60)


class _Seen:
    """A bounded, thread-safe set of keys this process already dealt with, so a rule that
    fires once per session costs no query on later requests."""

    def __init__(self, size: int = 10_000) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._keys

    def add(self, key: str) -> None:
        with self._lock:
            self._keys[key] = None
            if len(self._keys) > self._size:
                self._keys.popitem(last=False)


_seen = _Seen()


def ended_token_used(db: Session, session: UserSession, *, now: datetime, origin: Origin) -> None:
    """A request came with the token of an ended session (called on check_session's
    failing path only). The first such request is the session's own device finding out:
    its answer clears the cookie, so it is noted, not alerted. After a logout the browser
    knew at once. Any use more than a minute after the device was told means someone kept
    a copy of the token: one ``session_replay`` alert per session, however often it is
    replayed. Best effort: a busy database never turns the answer into an error."""
    key = f"session_replay:{session.id}"
    if key in _seen:
        return
    if session.end_reason == "logout":
        told = session.ended_at
    else:
        told = session.token_refused_at
        if told is None:
            _best_effort(db, lambda: _note_refused(db, session, now))
            return
    if told is None or now - told <= REPLAY_GRACE:
        return

    def alert() -> None:
        raise_alert(
            db,
            "session_replay",
            "medium",
            tenant_id=session.tenant_id,
            now=now,
            summary=(
                f"The token of a session that ended ({session.end_reason}) was used again "
                f"from {origin.ip or 'an unknown address'}"
                f"{' (' + _family_words(origin.user_agent) + ')' if origin.user_agent else ''}."
            ),
            user_id=session.user_id,
            session_id=session.id,
            origin=origin,
            dedupe_key=key,
            end_reason=session.end_reason,
            ended_at=session.ended_at.isoformat() if session.ended_at else None,
            session_ip=session.ip,
        )

    if _best_effort(db, alert):
        _seen.add(key)


def _note_refused(db: Session, session: UserSession, now: datetime) -> None:
    db.execute(
        update(UserSession)
        .where(UserSession.id == session.id, UserSession.token_refused_at.is_(None))
        .values(token_refused_at=now)
        .execution_options(synchronize_session=False)
    )


def _best_effort(db: Session, write: Any) -> bool:
    """Run ``write`` in a savepoint; a locked SQLite (a read transaction that cannot take
    the write lock) skips it instead of failing the request."""
    try:
        with db.begin_nested():
            write()
    except OperationalError:
        return False
    return True


def check_binding(db: Session, current: Current, origin: Origin, *, now: datetime) -> None:
    """Mid-session change of IP or of browser/OS family, per the tenant's policy (called by
    check_session only when the IP or the raw user agent differs from the session's):
    ``allow`` ignores it, ``flag`` raises one alert per session and kind, ``end`` ends the
    session (reason suspicious, with an alert) and raises InvalidSession."""
    session, tenant = current.session, current.tenant
    changes: list[tuple[str, str, str]] = []  # (kind, action, words)
    if tenant.ip_change != "allow" and origin.ip != session.ip:
        changes.append(
            ("ip_changed", tenant.ip_change, f"IP changed from {session.ip} to {origin.ip}")
        )
    if tenant.ua_change != "allow" and origin.user_agent != session.user_agent:
        before, after = _family(session.user_agent), _family(origin.user_agent)
        if before != after:
            changes.append(
                (
                    "ua_changed",
                    tenant.ua_change,
                    f"browser changed from {_family_words(session.user_agent)} to "
                    f"{_family_words(origin.user_agent)}",
                )
            )
    if not changes:
        return
    ending = any(action == "end" for _kind, action, _words in changes)
    for kind, action, words in changes:
        key = f"{kind}:{session.id}"
        if (action != "end" and ending) or key in _seen:
            continue  # an ending alert says it all; a flag is raised once per session

        def alert(
            kind: str = kind, action: str = action, words: str = words, key: str = key
        ) -> None:
            raise_alert(
                db,
                kind,
                "medium" if action == "end" or kind == "ua_changed" else "low",
                tenant_id=tenant.id,
                now=now,
                summary=(
                    f"Mid-session, the {words}; "
                    + ("the session was ended." if action == "end" else "the session goes on.")
                ),
                user_id=session.user_id,
                session_id=session.id,
                origin=origin,
                dedupe_key=key,
                action=action,
                session_ip=session.ip,
                session_user_agent=session.user_agent,
                user_agent=origin.user_agent,
            )

        if action == "end":
            alert()
        elif _best_effort(db, alert):
            _seen.add(key)
    if ending:
        end_session(db, session, "suspicious", now=now, origin=origin)
        raise InvalidSession(END_MESSAGES["suspicious"], reason="suspicious")


def _family(user_agent: str) -> tuple[str, str]:
    info = describe(user_agent or "")
    return info.browser, info.os


def _family_words(user_agent: str) -> str:
    browser, os_name = _family(user_agent)
    if browser and os_name:
        return f"{browser} on {os_name}"
    return browser or os_name or "an unknown browser"
