"""Rotating the token signing key: an operator's action (``holdfast keys rotate``).

A rotation publishes a new key at once and starts signing with it once every node and
every verifier has had time to fetch it (``publish_for``, app.tokens.publication_delay).
The keys it retires keep verifying for the longest lifetime any tenant's policy gives a
session (absolute or trusted), so every token already issued keeps working until it
would have ended anyway; then they drop out of the JWKS (app.tokens). With
``end_sessions`` it also ends every live session at once (reason ``keys_rotated``):
"change the keys and sign everyone out", done deliberately. With ``leaked`` the new key
signs at once and the old ones stop verifying at once: tokens they signed may be forged,
so every session ends too.

A deployment-wide sign-out can end millions of sessions, so it is one ``UPDATE`` per
tenant, not a ``session.ended`` event per session: each tenant's audit trail gets one
``keys.rotated`` event saying whether sessions were ended and how many of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app import tokens
from app.core import events
from app.models import Tenant, UserSession


@dataclass(frozen=True)
class Rotation:
    #: the new signing key's id
    kid: str
    #: live sessions ended, by tenant id (empty unless asked to end them)
    ended: dict[str, int]
    #: when the new key starts signing
    signs_from: datetime

    @property
    def sessions_ended(self) -> int:
        return sum(self.ended.values())


def rotate_signing_key(
    db: Session,
    ring: tokens.KeyRing,
    *,
    now: datetime,
    publish_for: timedelta,
    end_sessions: bool = False,
    leaked: bool = False,
) -> Rotation:
    """Publish a new key that signs from ``now + publish_for`` (at once if ``leaked``)
    and, with ``end_sessions`` or ``leaked``, end every live session of every tenant;
    one ``keys.rotated`` event per tenant. Runs on an unscoped session (it spans
    tenants); the caller commits and then reloads ``ring``."""
    absolute, trusted = db.execute(
        select(func.max(Tenant.absolute_lifetime), func.max(Tenant.trusted_lifetime))
    ).one()
    longest = timedelta(seconds=max(absolute or 0, trusted or 0))
    if leaked:
        publish_for = longest = timedelta(0)
        end_sessions = True
    key = tokens.rotate(db, ring, now, verify_for=longest, publish_for=publish_for)
    tenant_ids = list(db.scalars(select(Tenant.id).order_by(Tenant.id)))
    ended: dict[str, int] = {}
    if end_sessions:
        for tenant_id in tenant_ids:
            ended[tenant_id] = db.execute(
                update(UserSession)
                .where(UserSession.tenant_id == tenant_id, UserSession.ended_at.is_(None))
                .values(ended_at=now, end_reason="keys_rotated")
                .execution_options(synchronize_session=False, all_tenants=True)
            ).rowcount  # type: ignore[attr-defined]
    for tenant_id in tenant_ids:
        events.record(
            db,
            "keys.rotated",
            now=now,
            tenant_id=tenant_id,
            kid=key.kid,
            signs_from=(now + publish_for).isoformat(),
            leaked=leaked,
            ended_sessions=end_sessions,
            sessions_ended=ended.get(tenant_id, 0),
        )
    return Rotation(kid=key.kid, ended=ended, signs_from=now + publish_for)
