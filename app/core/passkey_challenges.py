"""Passkey challenges: the one-time values a WebAuthn ceremony signs, and who the
passkeys are for (:class:`RelyingParty`). The ceremonies that make and claim them are
app.core.passkeys.

A challenge (:class:`~app.models.PasskeyChallenge`) is 32 random bytes, single use (one
conditional UPDATE claims it, so of two answers to one challenge exactly one can pass),
dead after :data:`CHALLENGE_LIFETIME`, bound to the purpose it was made for, to the
relying party (the host of ``HOLDFAST_BASE_URL``) and origin, and for a registration or
fresh sign-in to the session that asked.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.core.errors import N_, HoldfastError
from app.models import PasskeyChallenge

CHALLENGE_LIFETIME = timedelta(minutes=5)


class PasskeyRefused(HoldfastError):
    """The passkey answer was not accepted (unknown or removed passkey, wrong challenge,
    origin or signature, a cloned authenticator...)."""

    code, status, message = (
        "invalid_passkey",
        400,
        N_("That passkey was not accepted. Try again, or sign in with an emailed code."),
    )


@dataclass(frozen=True)
class RelyingParty:
    """Who the passkeys are for: ``id`` is the host of HOLDFAST_BASE_URL (no port, no
    IP address: browsers refuse those), ``origin`` the scheme, host and port the pages are
    served from, ``name`` what authenticators show."""

    id: str
    origin: str
    name: str

    @classmethod
    def from_base_url(cls, base_url: str, name: str) -> RelyingParty:
        parts = urlsplit(base_url)
        if not parts.hostname or parts.scheme not in ("http", "https"):
            raise ValueError(f"HOLDFAST_BASE_URL {base_url!r} has no host for passkeys")
        return cls(id=parts.hostname, origin=f"{parts.scheme}://{parts.netloc}".lower(), name=name)


def new_challenge(
    db: Session,
    rp: RelyingParty,
    purpose: str,
    *,
    now: datetime,
    tenant_id: str | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
) -> PasskeyChallenge:
    """A new challenge of ``purpose`` for ``rp``, flushed (its id goes to the browser
    with the options)."""
    row = PasskeyChallenge(
        purpose=purpose,
        challenge=secrets.token_bytes(32),
        rp_id=rp.id,
        origin=rp.origin,
        tenant_id=tenant_id,
        user_id=user_id,
        session_id=session_id,
        created_at=now,
        expires_at=now + CHALLENGE_LIFETIME,
    )
    db.add(row)
    db.flush()
    return row


def claim_challenge(
    db: Session, rp: RelyingParty, challenge_id: Any, purpose: str, *, now: datetime
) -> PasskeyChallenge:
    """The live challenge ``challenge_id`` of ``purpose``, used up here: of parallel
    answers exactly one gets it. Raises PasskeyRefused (unknown, used, expired, another
    purpose or relying party)."""
    if not isinstance(challenge_id, str) or len(challenge_id) > 40:
        raise PasskeyRefused(N_("That passkey request has ended. Try again."))
    claimed = db.execute(
        update(PasskeyChallenge)
        .where(
            PasskeyChallenge.id == challenge_id,
            PasskeyChallenge.purpose == purpose,
            PasskeyChallenge.consumed_at.is_(None),
            PasskeyChallenge.expires_at > now,
            PasskeyChallenge.rp_id == rp.id,
            PasskeyChallenge.origin == rp.origin,
        )
        .values(consumed_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if claimed != 1:
        raise PasskeyRefused(N_("That passkey request has ended or was used already. Try again."))
    return db.get_one(PasskeyChallenge, challenge_id, populate_existing=True)
