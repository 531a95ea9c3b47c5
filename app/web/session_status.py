"""What a status check answers for a live session, and how answers write times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.core import sessions
from app.core.sessions import Current
from app.web.unit_of_work import db, now


def iso(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC to the second (``2026-03-02T09:00:00Z``), as every answer gives times."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def seconds_until(moment: datetime) -> int:
    return max(0, int((moment - now()).total_seconds()))


def live_status(me: Current) -> dict[str, Any]:
    """What a status check answers for a live session: the API's (``GET
    /api/auth/session``) and the page's own polling (``GET /session/status``)."""
    return {
        "valid": True,
        "sessionId": me.facts.session.id,
        "expiresAt": iso(me.expires_at),
        "expiresIn": seconds_until(me.expires_at),
        "deviceCount": sessions.device_count(db(), me.facts.user.id, now()),
    }
