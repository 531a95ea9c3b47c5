"""The audit trail: one append-only row per thing that happened."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.models import Event


@dataclass(frozen=True)
class Origin:
    """Where an action comes from: the client's address and user agent."""

    ip: str = ""
    user_agent: str = ""


SYSTEM = Origin(ip="", user_agent="holdfast")


def record(
    db: Session,
    kind: str,
    *,
    now: datetime,
    tenant_id: str | None,
    origin: Origin = SYSTEM,
    actor_id: str | None = None,
    subject_id: str | None = None,
    session_id: str | None = None,
    **details: Any,
) -> Event:
    event = Event(
        tenant_id=tenant_id,
        at=now,
        kind=kind,
        actor_id=actor_id,
        subject_id=subject_id,
        session_id=session_id,
        ip=origin.ip,
        details=details,
    )
    db.add(event)
    return event
