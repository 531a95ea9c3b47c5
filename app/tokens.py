"""Session tokens: ES256 JWTs, the signing key ring, and the public JWKS.

Only ids travel in a token (``sub`` user, ``tid`` tenant, ``sid`` session); ``exp`` is the
session's absolute deadline. A token proves which session the bearer holds; whether that
session is still alive is decided by the session row on every request (app.core.sessions).

Verification is strict: the algorithm is pinned to ES256, the header must name a known
``kid`` and the ``typ`` of a Holdfast session token, and headers that point at other keys
(``jku``, ``jwk``, ``x5u``, ``x5c``) are refused outright. A bounded cache remembers tokens
whose signature was already checked, so the hot path pays for ES256 once per token, not once
per request; ``exp`` is still checked on every use.

Keys are published before they sign. A rotation (:func:`rotate`) adds the new key with
an ``active_from`` :func:`publication_delay` ahead: until then it is in the JWKS of every
node (each re-reads the key ring at least every ``refresh_seconds``) while the old key
still signs, so by the time a token names the new key, every node and every verifier
that honours the JWKS's ``max-age`` has it. The old key then stops signing and keeps
verifying until the tokens it signed have expired.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import SigningKey
from app.sealing import SIGNING_KEY, Sealer, Unsealable

log = logging.getLogger(__name__)

ALGORITHM = "ES256"
TOKEN_TYPE = "hf-session+jwt"  # noqa: S105 (a JOSE typ, not a secret)
AUDIENCE = "holdfast"
FORBIDDEN_HEADERS = frozenset({"jku", "jwk", "x5u", "x5c"})
UNKNOWN_KID_RELOAD_SECONDS = 5.0
REQUIRED_CLAIMS = ("iss", "aud", "sub", "tid", "sid", "iat", "exp", "jti")


class TokenError(Exception):
    """The token is not one of ours: bad signature, header, claims or key."""


class TokenExpired(TokenError):
    """A genuine token whose ``exp`` has passed."""


@dataclass(frozen=True)
class Claims:
    user_id: str
    tenant_id: str
    session_id: str
    expires_at: int


class _Key:
    def __init__(
        self,
        kid: str,
        public: ec.EllipticCurvePublicKey,
        private: Any = None,
        *,
        active_from: float = float("-inf"),
        retired_at: float = float("inf"),
    ) -> None:
        self.kid = kid
        self.public = public
        self.private = private
        #: the signing window, in Unix seconds
        self.active_from = active_from
        self.retired_at = retired_at
        self.jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))

    def signs_at(self, moment: float) -> bool:
        return self.private is not None and self.active_from <= moment < self.retired_at


def publication_delay(refresh_seconds: float, jwks_max_age: int) -> timedelta:
    """How long a new key is published before it signs: one key-ring reload interval (the
    slowest node has it) plus the JWKS's ``max-age`` (the slowest verifier has it), plus a
    margin for clocks that disagree and fetches under way: half of that, at most 30 s."""
    wait = refresh_seconds + jwks_max_age
    return timedelta(seconds=wait + min(30.0, wait / 2))


class KeyRing:
    """The signing key and the keys that still verify, cached in memory and re-read from
    the database when a token names an unknown ``kid`` (another node rotated) or every
    ``refresh_seconds``.

    Private halves are sealed with :mod:`app.sealing` (the key's ``kid`` bound as its
    context). One that opens under none of the secret keys is kept for verifying only:
    tokens already issued keep working, and signing raises the Unsealable that says
    why (:attr:`problem`)."""

    def __init__(
        self,
        sealer: Sealer,
        issuer: str,
        load_keys: Callable[[], list[SigningKey]],
        *,
        cache_size: int = 10_000,
        refresh_seconds: float = 60.0,
    ) -> None:
        self.issuer = issuer
        self._sealer = sealer
        #: why a stored key could not be opened (None: all open); signing raises it when
        #: no key that opens may sign
        self.problem: Unsealable | None = None
        self._load_keys = load_keys
        self._keys: dict[str, _Key] = {}
        #: every loaded key, newest signing window first
        self._signers: list[_Key] = []
        self._loaded_at = float("-inf")
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._verified: OrderedDict[str, Claims] = OrderedDict()
        self._cache_size = cache_size

    # --- keys in the database -------------------------------------------------------

    def new_key(self, now: datetime) -> SigningKey:
        """A fresh ES256 key pair, private half encrypted, ready to be added to a session."""
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        kid = secrets.token_urlsafe(12)
        public_pem = (
            private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        return SigningKey(
            kid=kid,
            alg=ALGORITHM,
            public_pem=public_pem,
            private_encrypted=self._sealer.seal(SIGNING_KEY, pem, kid),
            created_at=now,
        )

    def reload(self) -> None:
        keys: dict[str, _Key] = {}
        problem: Unsealable | None = None
        for row in self._load_keys():
            public = serialization.load_pem_public_key(row.public_pem.encode())
            assert isinstance(public, ec.EllipticCurvePublicKey)
            private = None
            try:
                pem = self._sealer.open(SIGNING_KEY, row.private_encrypted, row.kid)
            except Unsealable as error:
                problem = error  # it still verifies (public half); it cannot sign
            else:
                private = serialization.load_pem_private_key(pem, None)
            keys[row.kid] = _Key(
                row.kid,
                public,
                private,
                active_from=(row.active_from or row.created_at).timestamp(),
                retired_at=row.retired_at.timestamp() if row.retired_at else float("inf"),
            )
        signers = sorted(keys.values(), key=lambda key: key.active_from, reverse=True)
        if problem is not None and not any(key.private for key in signers):
            log.error("cannot sign tokens: %s", problem)
        with self._lock:
            self._keys = keys
            self._signers = signers
            self.problem = problem
            self._loaded_at = time.monotonic()

    def signing_key(self, now: datetime) -> _Key | None:
        """The key that signs at ``now``: of those whose window holds it, the newest."""
        moment = now.timestamp()
        return next((key for key in self._signers if key.signs_at(moment)), None)

    def _fresh(self) -> None:
        if time.monotonic() - self._loaded_at > self.refresh_seconds:
            self.reload()

    # --- tokens ----------------------------------------------------------------------

    def sign(
        self, *, user_id: str, tenant_id: str, session_id: str, now: datetime, expires_at: datetime
    ) -> str:
        signing = self._signer(now)
        claims = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": user_id,
            "tid": tenant_id,
            "sid": session_id,
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
            "jti": secrets.token_urlsafe(12),
        }
        return jwt.encode(
            claims,
            signing.private,
            algorithm=ALGORITHM,
            headers={"kid": signing.kid, "typ": TOKEN_TYPE},
        )

    def _signer(self, now: datetime) -> _Key:
        self._fresh()
        signing = self.signing_key(now)
        if signing is None:
            self.reload()
            signing = self.signing_key(now)
        if signing is None:
            if self.problem is not None:
                raise self.problem
            raise RuntimeError("no signing key: run `holdfast db upgrade` (it creates one)")
        return signing

    def sign_claims(self, claims: dict[str, Any], *, typ: str, now: datetime) -> str:
        """``claims`` signed as they are, with the key that signs at ``now`` (its ``kid``
        in the header, so the JWKS verifies it): the tokens Holdfast issues as an OpenID
        Provider (ID tokens in app.web.oidc_server, logout tokens in app.worker). Their
        ``typ`` differs from :data:`TOKEN_TYPE`, so :meth:`verify` never takes one for a
        session token."""
        if typ == TOKEN_TYPE:
            raise ValueError("session tokens are made by sign()")
        signing = self._signer(now)
        return jwt.encode(
            claims, signing.private, algorithm=ALGORITHM, headers={"kid": signing.kid, "typ": typ}
        )

    def verify(self, token: str, now: datetime) -> Claims:
        """The claims of a genuine, unexpired token. Raises TokenExpired or TokenError."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify_signature(token, now)
            with self._lock:
                self._verified[token] = claims
                if len(self._verified) > self._cache_size:
                    self._verified.popitem(last=False)
        if claims.expires_at <= now.timestamp():
            raise TokenExpired("token expired")
        return claims

    def _verify_signature(self, token: str, now: datetime) -> Claims:
        if len(token) > 4096:
            raise TokenError("token too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise TokenError("malformed token") from error
        if header.get("alg") != ALGORITHM or header.get("typ") != TOKEN_TYPE:
            raise TokenError("wrong algorithm or token type")
        if FORBIDDEN_HEADERS & header.keys():
            raise TokenError("token names its own key")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise TokenError("no key id")
        self._fresh()
        key = self._keys.get(kid)
        if key is None and time.monotonic() - self._loaded_at > UNKNOWN_KID_RELOAD_SECONDS:
            # Another node may have rotated keys a moment ago; re-read at most every few
            # seconds, so made-up key ids cannot make every request query the database.
            self.reload()
            key = self._keys.get(kid)
        if key is None:
            raise TokenError("unknown key id")
        try:
            payload = jwt.decode(
                token,
                key.public,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=self.issuer,
                options={"require": list(REQUIRED_CLAIMS), "verify_exp": False},
            )
        except jwt.PyJWTError as error:
            raise TokenError(str(error)) from error
        if payload["exp"] <= now.timestamp():
            raise TokenExpired("token expired")
        ids = (payload["sub"], payload["tid"], payload["sid"])
        if not all(isinstance(value, str) for value in ids) or not isinstance(payload["exp"], int):
            raise TokenError("malformed claims")
        return Claims(*ids, expires_at=payload["exp"])

    def jwks(self) -> dict[str, Any]:
        """Every key that verifies, and any key about to sign (published ahead)."""
        self._fresh()
        return {
            "keys": [
                {**key.jwk, "kid": key.kid, "alg": ALGORITHM, "use": "sig"}
                for key in self._keys.values()
            ]
        }


def load_verifying_keys(db: Session, now: datetime) -> list[SigningKey]:
    """Keys that sign or still verify: the current one and retired ones not yet past."""
    rows = db.scalars(select(SigningKey).order_by(SigningKey.created_at)).all()
    return [row for row in rows if row.verify_until is None or row.verify_until > now]


def rotate(
    db: Session,
    ring: KeyRing,
    now: datetime,
    *,
    verify_for: timedelta,
    publish_for: timedelta,
) -> SigningKey:
    """Add a new key that signs from ``now + publish_for`` (see the module docstring);
    the keys signing until then stop at that moment and keep verifying for
    ``verify_for`` more (the longest a token they signed can live), then drop out of the
    JWKS. With ``publish_for`` zero the new key signs at once; with ``verify_for`` zero
    too the old keys stop verifying at once (a leaked key)."""
    active_from = now + publish_for
    for row in db.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))):
        row.retired_at = max(active_from, row.active_from or row.created_at)
        row.verify_until = row.retired_at + verify_for
    key = ring.new_key(now)
    key.active_from = active_from
    db.add(key)
    db.flush()
    return key
