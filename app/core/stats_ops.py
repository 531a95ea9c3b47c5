"""Figures for operations (Prometheus): cheap aggregates over the whole deployment."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.models import Event, UserSession


@dataclass
class Figures:
    live_sessions: int = 0
    sign_ins: int = 0
    failed_codes: int = 0
    ended_by_reason: dict[str, int] = field(default_factory=dict)


def ping(db: Session) -> None:
    """Raises the database's error when it cannot be reached."""
    db.execute(text("SELECT 1"))


def figures(db: Session, now: datetime) -> Figures:
    live = db.scalar(
        select(func.count())
        .select_from(UserSession)
        .where(
            UserSession.ended_at.is_(None),
            UserSession.idle_deadline > now,
            UserSession.absolute_deadline > now,
        )
        .execution_options(all_tenants=True)
    )
    kinds = dict(
        db.execute(
            select(Event.kind, func.count())
            .where(Event.kind.in_(("session.created", "code.failed")))
            .group_by(Event.kind)
        ).all()
    )
    ended = dict(
        db.execute(
            select(UserSession.end_reason, func.count())
            .where(UserSession.end_reason.is_not(None))
            .group_by(UserSession.end_reason)
            .execution_options(all_tenants=True)
        ).all()
    )
    return Figures(
        live_sessions=live or 0,
        sign_ins=kinds.get("session.created", 0),
        failed_codes=kinds.get("code.failed", 0),
        ended_by_reason={str(k): int(v) for k, v in ended.items()},
    )
