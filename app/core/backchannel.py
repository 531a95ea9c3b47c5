"""Back-channel logout (OpenID Connect Back-Channel Logout 1.0): when a Holdfast session
ends, for whatever reason, every app signed in through it is signed out too.

* **One hook.** Every way a session ends goes through app.core.sessions.end_session,
  which records a ``session.ended`` event; :func:`apps_signed_out` listens for those
  events as they are sealed (:data:`app.signals.events_sealed`, connected by the app
  factory), in the same transaction: it ends the session's app sign-ins (their tokens
  die) and queues one logout token per app that registered a back-channel URI. A
  rollback queues nothing.
* **An app taken away** (people taken off its list, or the app removed: app.core.
  oidc_access) ends its sign-ins through :func:`sign_out_of_client`, the same way: tokens
  die and logout tokens are queued, to a removed app too.
* **Idle and absolute expiry** are found on the session's next request; a session whose
  browser never comes back would never be found, so the worker also ends, each pass,
  the expired sessions that still have apps signed in (:func:`end_expired_sessions`).
* **Durable, retried.** Deliveries are rows, sent by ``holdfast worker`` like webhooks
  (claim, send outside any transaction, settle), with the same backoff and the same
  refusal of private addresses unless HOLDFAST_WEBHOOK_ALLOW_PRIVATE is set. Each attempt
  signs a fresh token (a short ``exp``) with the same ``jti``, so an app can drop repeats.
* **The token**: ``iss`` (the tenant's issuer), ``aud`` (the client id), ``iat``,
  ``exp``, ``jti``, ``sub``, ``sid`` and the back-channel ``events`` claim, never a
  ``nonce``; ``typ`` ``logout+jwt``; signed by the key ring (ES256, the JWKS).
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core import events, oidc_grants
from app.core.errors import N_, NotFound
from app.core.events import Origin
from app.core.sessions import deadlines, end_session
from app.core.webhooks import LEASE, record_attempt
from app.dns import Resolver
from app.models import (
    Device,
    Event,
    OidcClient,
    OidcGrant,
    OidcLogoutDelivery,
    Tenant,
    User,
    UserSession,
    new_id,
)
from app.webhook_transport import SEND_TIMEOUT, Outcome, post

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TYPE = "logout+jwt"  # noqa: S105 (a JOSE typ, not a secret)
LOGOUT_TOKEN_LIFETIME = timedelta(minutes=2)


def apps_signed_out(_database: object, *, db: Session, events: list[Event]) -> None:
    """The listener of :data:`app.signals.events_sealed`: for each ``session.ended``,
    end the session's app sign-ins and queue their logout tokens."""
    for event in events:
        if event.kind == "session.ended" and event.session_id:
            sign_out_apps(db, event.session_id, now=event.at)


def sign_out_apps(
    db: Session,
    session_id: str,
    *,
    now: datetime,
    client_id: str | None = None,
    reason: str | None = None,
) -> list[OidcGrant]:
    """End the live app sign-ins of ``session_id`` (of one app, given ``client_id``) and
    queue one logout token per app with a back-channel URI. ``reason`` is the grants'
    end reason (by default ``session_ended``, or ``signed_out`` for one app). Returns the
    grants ended."""
    ended: list[OidcGrant] = []
    queued: set[str] = set()
    reason = reason or ("session_ended" if client_id is None else "signed_out")
    for grant in oidc_grants.grants_of_session(db, session_id):
        if client_id is not None and grant.client_id != client_id:
            continue
        oidc_grants.end_grant(db, grant, reason, now=now)
        ended.append(grant)
        client = db.get(OidcClient, grant.client_id)
        if client is None or not client.backchannel_logout_uri or client.id in queued:
            continue
        queued.add(client.id)
        db.add(
            OidcLogoutDelivery(
                id=new_id("bcl"),
                tenant_id=grant.tenant_id,
                client_id=client.id,
                session_id=session_id,
                user_id=grant.user_id,
                jti=secrets.token_urlsafe(16),
                created_at=now,
                next_attempt_at=now,
            )
        )
    if ended:
        db.flush()
    return ended


def sign_out_of_client(
    db: Session,
    client: OidcClient,
    reason: str,
    *,
    now: datetime,
    user_ids: Collection[str] | None = None,
) -> list[OidcGrant]:
    """End every live sign-in to ``client`` (only those of ``user_ids``, given), with
    one logout token per Holdfast session through the outbox, as any ended sign-in.
    Returns the grants ended."""
    query = select(OidcGrant.session_id).where(
        OidcGrant.client_id == client.id, OidcGrant.ended_at.is_(None)
    )
    if user_ids is not None:
        if not user_ids:
            return []
        query = query.where(OidcGrant.user_id.in_(list(user_ids)))
    session_ids = db.scalars(query.distinct().execution_options(all_tenants=True)).all()
    ended: list[OidcGrant] = []
    for session_id in session_ids:
        ended += sign_out_apps(db, session_id, now=now, client_id=client.id, reason=reason)
    return ended


def end_expired_sessions(db: Session, *, now: datetime, limit: int = 500) -> int:
    """End (idle_expired or lifetime_expired) the sessions past their deadlines that
    still have apps signed in, so those apps hear of it without waiting for a request
    that may never come. Returns how many it ended."""
    ids = db.scalars(
        select(OidcGrant.session_id)
        .where(OidcGrant.ended_at.is_(None))
        .distinct()
        .limit(limit)
        .execution_options(all_tenants=True)
    ).all()
    count = 0
    for session_id in ids:
        row = db.execute(
            select(UserSession, Tenant, Device)
            .join(Tenant, Tenant.id == UserSession.tenant_id)
            .join(Device, Device.id == UserSession.device_id)
            .where(UserSession.id == session_id)
            .execution_options(all_tenants=True)
        ).first()
        if row is None:
            continue
        session, tenant, device = row
        if session.ended_at is not None:
            # Ended before apps were tracked, or by a path that recorded no event.
            sign_out_apps(db, session.id, now=now)
            continue
        idle, absolute = deadlines(session, tenant, device, now)
        if now >= absolute or now >= idle:
            reason = "lifetime_expired" if now >= absolute else "idle_expired"
            end_session(db, session, reason, now=now)
            count += 1
    return count


# --- sending (the worker) -----------------------------------------------------------------


@dataclass
class Claimed:
    delivery_id: str
    url: str
    claims: dict[str, Any]


def claim_next(db: Session, *, now: datetime, base_url: str) -> Claimed | None:
    """Take the logout delivery due longest (as app.core.webhooks.claim_next: ``SKIP
    LOCKED`` on PostgreSQL), moving it past the lease; commit before sending."""
    query = (
        select(OidcLogoutDelivery)
        .where(OidcLogoutDelivery.status == "pending", OidcLogoutDelivery.next_attempt_at <= now)
        .order_by(OidcLogoutDelivery.next_attempt_at, OidcLogoutDelivery.id)
        .limit(1)
        .execution_options(all_tenants=True)
    )
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    delivery = db.scalars(query).first()
    if delivery is None:
        return None
    delivery.next_attempt_at = now + LEASE
    client = db.get(OidcClient, delivery.client_id)
    tenant = db.get(Tenant, delivery.tenant_id)
    db.flush()
    claims = {
        "iss": f"{base_url.rstrip('/')}/oidc/{tenant.slug if tenant else ''}",
        "aud": delivery.client_id,
        "jti": delivery.jti,
        "sub": delivery.user_id,
        "sid": delivery.session_id,
        "events": {LOGOUT_EVENT: {}},
    }
    # A removed app still hears of the sign-ins its removal ended (docs/oidc.md).
    url = (client.backchannel_logout_uri or "") if client else ""
    return Claimed(delivery.id, url, claims)


def send(
    claimed: Claimed,
    sign: Callable[[dict[str, Any], datetime], str],
    *,
    now: datetime,
    allow_private: bool,
    timeout: float = SEND_TIMEOUT,
    resolve: Resolver = socket.getaddrinfo,
) -> Outcome:
    """POST a freshly signed logout token (``sign(claims, now)``). Never raises."""
    if not claimed.url:
        return Outcome(error="the app has no back-channel logout URI")
    claims = {
        **claimed.claims,
        "iat": int(now.timestamp()),
        "exp": int((now + LOGOUT_TOKEN_LIFETIME).timestamp()),
    }
    try:
        token = sign(claims, now)
    except Exception as error:  # a key that cannot sign: retried like a network failure
        return Outcome(error=f"cannot sign the logout token: {error}"[:300])
    body = urlencode({"logout_token": token}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return post(
        claimed.url, body, headers, allow_private=allow_private, timeout=timeout, resolve=resolve
    )


def settle(
    db: Session, claimed: Claimed, outcome: Outcome, *, now: datetime
) -> OidcLogoutDelivery | None:
    """Write down an attempt: delivered (a 2xx), due again after the webhooks' backoff,
    or failed after their MAX_ATTEMPTS."""
    delivery = db.get(OidcLogoutDelivery, claimed.delivery_id)
    if delivery is None:
        return None
    record_attempt(delivery, outcome, now=now)
    db.flush()
    return delivery


# --- what the device page shows and does ----------------------------------------------------


@dataclass(frozen=True)
class SignedInApp:
    grant_id: str
    client_id: str
    name: str
    since: datetime


def apps_of_session(db: Session, session_id: str) -> list[SignedInApp]:
    """The apps signed in through ``session_id`` now, oldest first (one line per app)."""
    found: dict[str, SignedInApp] = {}
    for grant in oidc_grants.grants_of_session(db, session_id):
        client = db.get(OidcClient, grant.client_id)
        if client is None or client.removed_at is not None or client.id in found:
            continue
        found[client.id] = SignedInApp(grant.id, client.id, client.name, grant.created_at)
    return list(found.values())


def sign_out_of_app(
    db: Session, user_id: str, grant_id: str, *, now: datetime, actor_id: str, origin: Origin
) -> OidcGrant:
    """The person (or an admin, ``actor_id``) signs ``user_id`` out of one app on one
    session: that app's sign-ins through the session end and it gets its logout token;
    the Holdfast session and its other apps stay. Raises NotFound for a grant that is not
    the person's or has ended."""
    grant = db.get(OidcGrant, grant_id) if isinstance(grant_id, str) else None
    if grant is None or grant.user_id != user_id or grant.ended_at is not None:
        raise NotFound(N_("No such app sign-in"))
    sign_out_apps(db, grant.session_id, now=now, client_id=grant.client_id)
    events.record(
        db,
        "oidc.signed_out",
        now=now,
        tenant_id=grant.tenant_id,
        origin=origin,
        actor_id=actor_id,
        subject_id=grant.user_id,
        session_id=grant.session_id,
        client_id=grant.client_id,
    )
    return grant


@dataclass(frozen=True)
class ActiveSignIn:
    grant_id: str
    user_id: str
    email: str
    session_id: str
    since: datetime


def active_sign_ins(db: Session, client: OidcClient, *, limit: int = 200) -> list[ActiveSignIn]:
    """The app's live sign-ins (one per grant), newest first, for its admin page."""
    rows = db.execute(
        select(OidcGrant, User.email)
        .join(User, User.id == OidcGrant.user_id)
        .where(OidcGrant.client_id == client.id, OidcGrant.ended_at.is_(None))
        .order_by(OidcGrant.created_at.desc())
        .limit(limit)
        .execution_options(all_tenants=True)
    ).all()
    return [
        ActiveSignIn(grant.id, grant.user_id, email, grant.session_id, grant.created_at)
        for grant, email in rows
    ]


def end_sign_in_as_admin(
    db: Session,
    client: OidcClient,
    grant_id: str,
    *,
    now: datetime,
    admin_id: str,
    origin: Origin,
) -> OidcGrant:
    """A tenant admin ends one person's sign-in to ``client`` (as :func:`sign_out_of_app`).
    Raises NotFound for a grant of another app or tenant, or one that has ended."""
    grant = db.get(OidcGrant, grant_id) if isinstance(grant_id, str) else None
    if grant is None or grant.client_id != client.id or grant.tenant_id != client.tenant_id:
        raise NotFound(N_("No such app sign-in"))
    return sign_out_of_app(db, grant.user_id, grant.id, now=now, actor_id=admin_id, origin=origin)
