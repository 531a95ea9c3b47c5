"""Figures for operations (Prometheus): cheap aggregates over the whole deployment, read
at scrape time (gauges: app.web.metrics)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.models import OutboxMessage, UserSession, WebhookDelivery

#: how far back "mail given up" looks
UNDELIVERED_WINDOW = timedelta(hours=24)


@dataclass
class Figures:
    live_sessions: int = 0
    #: mail waiting to be sent, and how long the oldest of it has waited
    mail_queued: int = 0
    mail_oldest_seconds: float = 0.0
    #: mail given up (failed or expired) in the last UNDELIVERED_WINDOW
    mail_undelivered: int = 0
    webhooks_queued: int = 0
    webhooks_failed: int = 0


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
    queued, oldest = db.execute(
        select(func.count(), func.min(OutboxMessage.created_at))
        .where(OutboxMessage.status == "pending")
        .execution_options(all_tenants=True)
    ).one()
    undelivered = db.scalar(
        select(func.count())
        .select_from(OutboxMessage)
        .where(
            OutboxMessage.status.in_(("failed", "expired")),
            OutboxMessage.created_at >= now - UNDELIVERED_WINDOW,
        )
        .execution_options(all_tenants=True)
    )
    webhooks = dict(
        db.execute(
            select(WebhookDelivery.status, func.count())
            .where(WebhookDelivery.status.in_(("pending", "failed")))
            .group_by(WebhookDelivery.status)
            .execution_options(all_tenants=True)
        ).all()
    )
    return Figures(
        live_sessions=live or 0,
        mail_queued=queued or 0,
        mail_oldest_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        mail_undelivered=undelivered or 0,
        webhooks_queued=webhooks.get("pending", 0),
        webhooks_failed=webhooks.get("failed", 0),
    )
