"""What a tenant admin sees of the tenant's outgoing mail (app.outbox): what is waiting,
and what was given up, so a relay in trouble is noticed before people complain that
their codes do not come. Bodies are never shown (they are sealed, and wiped once done).
Runs on the admin's tenant-scoped session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.errors import N_
from app.models import OutboxMessage

#: what each kind of mail is, in the admin's words
KIND_LABELS = {
    "sign_in_code": N_("Sign-in code"),
    "new_device": N_("New sign-in notice"),
    "session_evicted": N_("Signed out at the limit"),
    "person_added": N_("Added to the organisation"),
    "high_alert": N_("High alert to admins"),
    "recovery_code_used": N_("Recovery code used"),
    "passkey_added": N_("Passkey added"),
    "passkey_removed": N_("Passkey removed"),
}
#: how far back given-up mail is listed
GIVEN_UP_DAYS = 7
SHOWN = 100


@dataclass
class MailQueue:
    #: waiting to be sent, oldest first
    waiting: list[OutboxMessage]
    #: given up (failed or expired) in the last GIVEN_UP_DAYS, newest first
    given_up: list[OutboxMessage]
    #: sent in the last 24 hours
    sent_today: int


def mail_queue(db: Session, *, now: datetime) -> MailQueue:
    waiting = db.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.status == "pending")
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
        .limit(SHOWN)
    ).all()
    given_up = db.scalars(
        select(OutboxMessage)
        .where(
            OutboxMessage.status.in_(("failed", "expired")),
            OutboxMessage.created_at >= now - timedelta(days=GIVEN_UP_DAYS),
        )
        .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
        .limit(SHOWN)
    ).all()
    sent_today = db.scalar(
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.status == "sent", OutboxMessage.sent_at >= now - timedelta(days=1))
    )
    return MailQueue(list(waiting), list(given_up), sent_today or 0)
