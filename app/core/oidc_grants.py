"""What an app signed in through Holdfast holds: authorization codes, grants and tokens,
all hanging on the Holdfast session that approved them (the OP session).

* **Codes** are single use and live :data:`CODE_LIFETIME`. Exchanging one a second time
  ends the grant the first exchange started, with every token of it (RFC 6749 §4.1.2,
  RFC 9700 §4.2.4): a replayed code is a stolen one.
* **Grants.** One per app signed in through one Holdfast session: the device page lists
  them, back-channel logout is sent for them (app.core.backchannel), and ending one
  ends its tokens.
* **Tokens** are opaque (random, keyed hashes only). An access token lives
  :data:`ACCESS_LIFETIME`; a refresh token as long as the session, and is rotated on
  every use (using an old one again ends the grant). Every use of either checks the
  grant and the Holdfast session behind it, under the tenant's policy as it is now: a
  token dies the moment its session ends, for whatever reason, or runs out.
* **amr / acr** come from :func:`amr_for` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core import events, oidc_clients
from app.core.events import Origin
from app.core.sessions import SESSION_BY_ID, deadlines
from app.crypto import Hasher
from app.models import (
    Device,
    OidcClient,
    OidcCode,
    OidcGrant,
    OidcToken,
    Tenant,
    User,
    UserSession,
    new_id,
)

CODE_LIFETIME = timedelta(minutes=1)
ACCESS_LIFETIME = timedelta(minutes=10)
#: the ``acr`` of a sign-in that used a second factor
ACR_MFA = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"
#: RFC 8176 values by Holdfast's sign-in methods (UserSession.sign_in_method, when it
#: exists): an emailed code, link or recovery code is a one-time password; a passkey is
#: a hardware-bound key with user verification
#: sign-in methods that finish a second step after the emailed code (app.core.signin)
SECOND_STEPS = frozenset({"app", "recovery"})

_AMR = {
    "code": ["otp"],
    "link": ["otp"],
    "recovery": ["otp"],
    "app": ["otp"],
    "passkey": ["hwk", "user"],
}


def amr_for(method: str, *, second_factor: bool) -> tuple[list[str], str | None]:
    """The ID token's ``amr`` (RFC 8176 values) and ``acr`` for a session signed in by
    ``method`` ("code", "app", "passkey", "recovery", "link"), with or without a second
    factor. The one place that decides them: a passkey counts as two factors (the device
    and its user verification), like the emailed code followed by an app or recovery
    code."""
    amr = list(_AMR.get(method, ["otp"]))
    multi = second_factor or method == "passkey"
    if second_factor and "otp" not in amr:
        amr.append("otp")
    if multi:
        amr.append("mfa")
        return amr, ACR_MFA
    return amr, None


def session_amr(session: UserSession) -> tuple[list[str], str | None]:
    """:func:`amr_for` of ``session``, by how it was signed in (``sign_in_method``; a
    session from before sessions recorded it began with an emailed code). "app" and
    "recovery" mean the emailed code was followed by a second step."""
    method = session.sign_in_method or "code"
    return amr_for(method, second_factor=method in SECOND_STEPS)


def _hash(hasher: Hasher, kind: str, value: str) -> str:
    return hasher.hash(f"oidc-{kind}", value)


def _candidates(hasher: Hasher, kind: str, value: str) -> list[str]:
    return hasher.candidates(f"oidc-{kind}", value)


# --- the session behind everything ------------------------------------------------------


@dataclass(frozen=True)
class LiveSession:
    session: UserSession
    user: User
    tenant: Tenant
    device: Device


def live_session(db: Session, session_id: str, now: datetime) -> LiveSession | None:
    """The Holdfast session ``session_id`` if it is alive now: not ended, within its idle
    and absolute deadlines under the tenant's policy as it is now, its person not
    disabled. None otherwise (it is marked ended by its own next request or the sweep)."""
    row = db.execute(SESSION_BY_ID, {"session_id": session_id}).first()
    if row is None:
        return None
    session, user, tenant, device = row
    if session.ended_at is not None or user.disabled:
        return None
    if min(deadlines(session, tenant, device, now)) <= now:
        return None
    return LiveSession(session, user, tenant, device)


# --- codes ------------------------------------------------------------------------------


def issue_code(
    db: Session,
    hasher: Hasher,
    client: OidcClient,
    signed_in: LiveSession,
    *,
    code: str,
    redirect_uri: str,
    scope: str,
    nonce: str | None,
    code_challenge: str | None,
    code_challenge_method: str | None,
    now: datetime,
) -> OidcCode:
    """Store the authorization code ``code`` (made by the protocol library) for the
    person of ``signed_in``, tied to that session."""
    amr, acr = session_amr(signed_in.session)
    row = OidcCode(
        id=new_id("oac"),
        tenant_id=client.tenant_id,
        code_hash=_hash(hasher, "code", code),
        client_id=client.id,
        user_id=signed_in.user.id,
        session_id=signed_in.session.id,
        redirect_uri=redirect_uri,
        scope=scope or "",
        nonce=nonce or None,
        code_challenge=code_challenge or None,
        code_challenge_method=(code_challenge_method or "S256") if code_challenge else None,
        auth_time=signed_in.session.authenticated_at,
        amr=amr,
        acr=acr,
        created_at=now,
        expires_at=now + CODE_LIFETIME,
    )
    db.add(row)
    db.flush()
    return row


def find_code(
    db: Session, hasher: Hasher, client: OidcClient, code: str, *, now: datetime, origin: Origin
) -> OidcCode | None:
    """The unused, unexpired code ``code`` issued to ``client``, or None. A code that was
    already exchanged is a replay: the grant it started ends, with all its tokens, and
    the replay is audited (the caller's transaction must commit even though it refuses
    the request)."""
    if not isinstance(code, str) or not code or len(code) > 200:
        return None
    row = db.scalar(
        select(OidcCode)
        .where(
            OidcCode.code_hash.in_(_candidates(hasher, "code", code)),
            OidcCode.client_id == client.id,
        )
        .execution_options(all_tenants=True)
    )
    if row is None:
        return None
    if row.used_at is not None:
        ended = [
            grant
            for grant in db.scalars(
                select(OidcGrant)
                .where(OidcGrant.code_id == row.id)
                .execution_options(all_tenants=True)
            )
            if end_grant(db, grant, "code_replayed", now=now)
        ]
        events.record(
            db,
            "oidc.code_replayed",
            now=now,
            tenant_id=row.tenant_id,
            origin=origin,
            subject_id=row.user_id,
            session_id=row.session_id,
            client_id=client.id,
            grants_ended=[grant.id for grant in ended],
        )
        return None
    if row.expires_at <= now:
        return None
    return row


# --- grants and tokens ------------------------------------------------------------------


def start_grant(
    db: Session,
    hasher: Hasher,
    code: OidcCode,
    *,
    access_token: str,
    refresh_token: str | None,
    expires_in: int,
    now: datetime,
    origin: Origin,
) -> OidcGrant:
    """Use up ``code`` and start its grant with the first tokens (made by the protocol
    library; stored as keyed hashes). The caller has checked that the session that
    approved the code is alive (:func:`live_session`)."""
    code.used_at = now
    grant = OidcGrant(
        id=new_id("oag"),
        tenant_id=code.tenant_id,
        client_id=code.client_id,
        user_id=code.user_id,
        session_id=code.session_id,
        code_id=code.id,
        scope=code.scope,
        created_at=now,
    )
    db.add(grant)
    db.flush()
    events.record(
        db,
        "oidc.signed_in",
        now=now,
        tenant_id=code.tenant_id,
        origin=origin,
        actor_id=code.user_id,
        subject_id=code.user_id,
        session_id=code.session_id,
        client_id=code.client_id,
        grant_id=grant.id,
        scope=code.scope,
    )
    _store(db, hasher, grant, access_token, refresh_token, expires_in, now=now)
    return grant


def _store(
    db: Session,
    hasher: Hasher,
    grant: OidcGrant,
    access_token: str,
    refresh_token: str | None,
    expires_in: int,
    *,
    now: datetime,
) -> OidcToken:
    token = OidcToken(
        id=new_id("oat"),
        tenant_id=grant.tenant_id,
        grant_id=grant.id,
        access_hash=_hash(hasher, "access", access_token),
        refresh_hash=_hash(hasher, "refresh", refresh_token) if refresh_token else None,
        scope=grant.scope,
        issued_at=now,
        expires_at=now + timedelta(seconds=expires_in),
    )
    db.add(token)
    db.flush()
    return token


@dataclass(frozen=True)
class TokenFacts:
    """A token that is alive now, with what it hangs on."""

    token: OidcToken
    grant: OidcGrant
    signed_in: LiveSession


def _alive(db: Session, token: OidcToken | None, now: datetime) -> TokenFacts | None:
    if token is None or token.revoked_at is not None:
        return None
    grant = db.get(OidcGrant, token.grant_id)
    if grant is None or grant.ended_at is not None:
        return None
    client = db.get(OidcClient, grant.client_id)
    if client is None or client.removed_at is not None:
        return None
    if not oidc_clients.may_use(db, client, grant.user_id):
        return None  # taken away (app.core.oidc_access ends such grants at once, too)
    signed_in = live_session(db, grant.session_id, now)
    if signed_in is None:
        return None
    return TokenFacts(token, grant, signed_in)


def token_alive(
    db: Session, token: OidcToken, *, is_refresh: bool, now: datetime
) -> TokenFacts | None:
    """What ``token`` hangs on if it is alive now (as its access token, or as its refresh
    token when ``is_refresh``), else None."""
    if is_refresh and token.refreshed_at is not None:
        return None
    if not is_refresh and token.expires_at <= now:
        return None
    return _alive(db, token, now)


def access_token_facts(
    db: Session, hasher: Hasher, tenant_id: str, access_token: str, now: datetime
) -> TokenFacts | None:
    """The live access token ``access_token`` of ``tenant_id``, or None (unknown,
    expired, revoked, its grant or session ended)."""
    if not isinstance(access_token, str) or not access_token or len(access_token) > 200:
        return None
    token = db.scalar(
        select(OidcToken)
        .where(
            OidcToken.access_hash.in_(_candidates(hasher, "access", access_token)),
            OidcToken.tenant_id == tenant_id,
        )
        .execution_options(all_tenants=True)
    )
    if token is None or token.expires_at <= now:
        return None
    return _alive(db, token, now)


def refresh_token_facts(
    db: Session,
    hasher: Hasher,
    client: OidcClient,
    refresh_token: str,
    *,
    now: datetime,
    origin: Origin,
) -> TokenFacts | None:
    """The live refresh token ``refresh_token`` of ``client``, or None. One that was
    already exchanged (rotated) is a replay: its grant ends."""
    if not isinstance(refresh_token, str) or not refresh_token or len(refresh_token) > 200:
        return None
    token = db.scalar(
        select(OidcToken)
        .where(OidcToken.refresh_hash.in_(_candidates(hasher, "refresh", refresh_token)))
        .execution_options(all_tenants=True)
    )
    if token is None:
        return None
    grant = db.get(OidcGrant, token.grant_id)
    if grant is None or grant.client_id != client.id:
        return None
    if token.refreshed_at is not None:
        if end_grant(db, grant, "refresh_replayed", now=now):
            events.record(
                db,
                "oidc.refresh_replayed",
                now=now,
                tenant_id=grant.tenant_id,
                origin=origin,
                subject_id=grant.user_id,
                session_id=grant.session_id,
                client_id=client.id,
                grant_id=grant.id,
            )
        return None
    return _alive(db, token, now)


def rotate_refresh(
    db: Session,
    hasher: Hasher,
    facts: TokenFacts,
    *,
    access_token: str,
    refresh_token: str,
    expires_in: int,
    now: datetime,
) -> OidcToken:
    """Exchange a live refresh token for a new pair in the same grant (the old pair stops
    working; using the old refresh token again ends the grant)."""
    facts.token.refreshed_at = now
    facts.token.revoked_at = now
    return _store(db, hasher, facts.grant, access_token, refresh_token, expires_in, now=now)


def revoke_token(
    db: Session, token: OidcToken, *, refresh_token: bool, now: datetime, origin: Origin
) -> None:
    """RFC 7009: revoking a refresh token ends its grant (every token of the sign-in);
    revoking an access token ends that access token alone."""
    grant = db.get(OidcGrant, token.grant_id)
    if refresh_token and grant is not None:
        end_grant(db, grant, "revoked", now=now)
    else:
        # The pair shares a row: the access token ends by expiring now, so the refresh
        # token keeps working (RFC 7009 §2.1 leaves that to the server).
        token.expires_at = min(token.expires_at, now)
    if grant is not None:
        events.record(
            db,
            "oidc.token_revoked",
            now=now,
            tenant_id=grant.tenant_id,
            origin=origin,
            subject_id=grant.user_id,
            session_id=grant.session_id,
            client_id=grant.client_id,
            grant_id=grant.id,
            token="refresh_token" if refresh_token else "access_token",
        )


def find_token_of_client(
    db: Session, hasher: Hasher, client: OidcClient, value: str, hint: str | None
) -> tuple[OidcToken, bool] | None:
    """The token ``value`` (access or refresh, ``hint`` first) if it belongs to
    ``client``, with whether it is the refresh token. None otherwise: a client never
    learns about another client's tokens."""
    if not isinstance(value, str) or not value or len(value) > 200:
        return None
    kinds = ("refresh", "access") if hint == "refresh_token" else ("access", "refresh")
    for kind in kinds:
        column = OidcToken.refresh_hash if kind == "refresh" else OidcToken.access_hash
        token = db.scalar(
            select(OidcToken)
            .where(column.in_(_candidates(hasher, kind, value)))
            .execution_options(all_tenants=True)
        )
        if token is not None:
            grant = db.get(OidcGrant, token.grant_id)
            if grant is None or grant.client_id != client.id:
                return None
            return token, kind == "refresh"
    return None


def end_grant(db: Session, grant: OidcGrant, reason: str, *, now: datetime) -> bool:
    """End ``grant`` and revoke its tokens. False if it had ended."""
    if grant.ended_at is not None:
        return False
    grant.ended_at = now
    grant.end_reason = reason
    db.execute(
        update(OidcToken)
        .where(OidcToken.grant_id == grant.id, OidcToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session="fetch", all_tenants=True)
    )
    return True


def grants_of_session(db: Session, session_id: str, *, live_only: bool = True) -> list[OidcGrant]:
    """The apps signed in through ``session_id``, oldest first."""
    query = select(OidcGrant).where(OidcGrant.session_id == session_id)
    if live_only:
        query = query.where(OidcGrant.ended_at.is_(None))
    return list(
        db.scalars(query.order_by(OidcGrant.created_at).execution_options(all_tenants=True))
    )
