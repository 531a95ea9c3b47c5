"""A person's passkeys once added (app.core.passkeys adds them and signs in with them):
listing them with the devices they were added and last used on, renaming and removing
one, and the tenant's share of sign-ins made with a passkey. Removing is audited and
mailed, and needs a fresh sign-in; a tenant that turns ``allow_passkeys`` off still lists
its people's passkeys so they can be removed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.core import events
from app.core.access import FreshSignInRequired, is_fresh
from app.core.deployment import deployment
from app.core.errors import N_, NotFound, ValidationError
from app.core.events import Origin
from app.core.sessions import Current
from app.models import Device, Passkey, Tenant, User, UserSession
from app.outbox import queue_mail

MAX_NAME = 100


def list_passkeys(db: Session, user: User) -> list[Passkey]:
    return list(
        db.scalars(
            select(Passkey)
            .where(Passkey.user_id == user.id)
            .order_by(Passkey.created_at, Passkey.id)
            .execution_options(all_tenants=True)
        )
    )


def passkey_share(db: Session, tenant_id: str, since: datetime) -> int:
    """The percentage (rounded down) of the tenant's sign-ins since ``since`` that used a
    passkey; 0 when there were none."""
    total, by_passkey = db.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((UserSession.sign_in_method == "passkey", 1), else_=0)), 0),
        ).where(UserSession.tenant_id == tenant_id, UserSession.created_at >= since)
    ).one()
    return int(by_passkey) * 100 // int(total) if total else 0


def device_names(db: Session, passkeys: list[Passkey]) -> dict[str, str]:
    """The display names of the devices the passkeys were added and last used on."""
    ids = {p.created_device_id for p in passkeys} | {p.last_device_id for p in passkeys}
    ids.discard(None)
    if not ids:
        return {}
    rows = db.scalars(select(Device).where(Device.id.in_(ids)).execution_options(all_tenants=True))
    return {row.id: row.display_name for row in rows}


def audit(
    db: Session,
    kind: str,
    user: User,
    passkey: Passkey,
    *,
    now: datetime,
    origin: Origin,
    session_id: str | None,
    **details: Any,
) -> None:
    """Record the event ``kind`` (``passkey.added``, ``.used``, ``.renamed``,
    ``.removed``) of one of ``user``'s passkeys, done by that person, in the caller's
    transaction: the one place that says which fields a passkey event carries."""
    events.record(
        db,
        kind,
        now=now,
        tenant_id=user.tenant_id,
        origin=origin,
        actor_id=user.id,
        subject_id=user.id,
        session_id=session_id,
        passkey_id=passkey.id,
        **details,
    )


def _mine(db: Session, current: Current, passkey_id: Any) -> Passkey:
    passkey = db.get(Passkey, passkey_id) if isinstance(passkey_id, str) else None
    if passkey is None or passkey.user_id != current.user.id:
        raise NotFound(N_("No such passkey."))
    return passkey


def rename(
    db: Session, current: Current, passkey_id: Any, name: Any, *, now: datetime, origin: Origin
) -> Passkey:
    """Give one of the person's passkeys a new name. Raises NotFound or ValidationError."""
    passkey = _mine(db, current, passkey_id)
    passkey.name = checked_name(name)
    audit(
        db,
        "passkey.renamed",
        current.user,
        passkey,
        now=now,
        origin=origin,
        session_id=current.session.id,
        name=passkey.name,
    )
    db.flush()
    return passkey


def remove(
    db: Session, current: Current, passkey_id: Any, *, now: datetime, origin: Origin
) -> Passkey:
    """Remove one of the person's passkeys (it signs in nowhere from now on); audited as
    ``passkey.removed`` and mailed. Raises NotFound, or FreshSignInRequired (a stale
    sign-in: whoever holds an unlocked session should not quietly remove a way in)."""
    passkey = _mine(db, current, passkey_id)
    if not is_fresh(current, now):
        raise FreshSignInRequired(
            N_("Confirm it's you first: removing a passkey needs a recent sign-in.")
        )
    db.delete(passkey)
    audit(
        db,
        "passkey.removed",
        current.user,
        passkey,
        now=now,
        origin=origin,
        session_id=current.session.id,
        name=passkey.name,
    )
    db.flush()
    mail_owner(db, "passkey_removed", current.user, current.tenant, passkey, now=now, origin=origin)
    return passkey


def checked_name(name: Any) -> str:
    """``name`` with its spaces collapsed. Raises ValidationError (empty, longer than
    :data:`MAX_NAME`, or holding a NUL)."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(N_("Give the passkey a name."), field="name")
    clean = " ".join(name.split())
    if len(clean) > MAX_NAME or "\x00" in clean:
        raise ValidationError(
            N_("A passkey's name is at most %(max)s characters."),
            words={"max": MAX_NAME},
            field="name",
        )
    return clean


def mail_owner(
    db: Session,
    kind: str,
    user: User,
    tenant: Tenant,
    passkey: Passkey,
    *,
    now: datetime,
    origin: Origin,
) -> None:
    """Queue the mail ``kind`` (``passkey_added``, ``passkey_removed``) to the passkey's
    person, in the caller's transaction."""
    queue_mail(
        db,
        kind,
        to=user.email,
        values={
            "product": deployment(db).product,
            "tenant_name": tenant.name,
            "name": passkey.name,
            "at": now,
            "ip": origin.ip,
        },
        tenant_id=user.tenant_id,
        now=now,
        language=user.language,
    )
