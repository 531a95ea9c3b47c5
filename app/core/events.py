"""The audit trail: one append-only row per thing that happened.

:func:`record` adds the event to the caller's transaction. When that transaction
commits, :func:`before_commit` (registered by the database set-up) seals the
transaction's events into their tenants' hash chains (:mod:`app.core.audit`) and
announces them, so that webhooks queue a delivery for every subscribed endpoint
(:mod:`app.core.webhooks` listens), all in the same transaction: an event that is rolled
back is neither chained nor announced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app import signals
from app.core import audit
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
    """Add an audit event to ``db``'s transaction; it is chained and announced to
    webhooks when the transaction commits. ``details`` must be JSON values."""
    event = Event(
        tenant_id=tenant_id,
        at=now,
        kind=kind,
        actor_id=actor_id,
        subject_id=subject_id,
        session_id=session_id,
        ip=origin.ip[:45],
        # Stored as JSON: hash exactly what reading the row back will give.
        details=json.loads(json.dumps(details)),
    )
    db.add(event)
    audit.note_unsealed(db, event)
    return event


def before_commit(db: Session) -> None:
    """Seal the transaction's events into their chains and announce them
    (:data:`app.signals.events_sealed`: the webhooks queue their deliveries), in the same
    transaction. The database set-up registers it on every session it makes."""
    if db.in_nested_transaction():
        return  # a savepoint's release: the outer commit seals
    if not db.info.get(audit.PENDING):
        return
    # Sealed before the flush, so new events are inserted with their hashes.
    sealed = audit.seal_pending(db)
    db.flush()
    if sealed:
        db.info.setdefault("committed_events", []).extend(sealed)
        signals.events_sealed.send(db.info.get("database"), db=db, events=sealed)


def after_rollback(db: Session) -> None:
    """Forget the events of a transaction that was rolled back (registered like
    :func:`before_commit`)."""
    if not db.in_transaction():
        audit.forget_pending(db)
