"""Stored secrets and the keys they are sealed under: check them, and re-seal them under
the current secret key (``holdfast secrets check``, ``holdfast secrets rotate``, /readyz
and the start-up check in app.preflight).

What is stored sealed (app.sealing): the token signing keys' private halves, the
authenticator apps' TOTP secrets, the webhook signing secrets and the audit chains'
pseudonym keys. After the secret key changes (the old one moved to
HOLDFAST_SECRET_KEY_FALLBACKS) they all still open; :func:`reseal` seals each one that is
not yet under the current key again, so the fallback can be dropped. Each row is
rewritten with a conditional UPDATE (only if it still holds the blob that was read), so a
person enrolling an app meanwhile is never overwritten, and running it again finds
nothing to do.

Keyed hashes (device cookies, sign-in codes, "This wasn't me" links) cannot be re-made
without the values they hash, which Holdfast never stores: each is re-hashed under the
current key when it is next used (a device cookie), or expires (codes in 10 minutes,
links in 7 days). See docs/operations.md for how long to keep a fallback.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core import audit, events
from app.models import AuditHead, SigningKey, Tenant, User, WebhookEndpoint
from app.sealing import (
    PSEUDONYM_KEY,
    SIGNING_KEY,
    TOTP_SECRET,
    WEBHOOK_SECRET,
    Purpose,
    Sealer,
    Unsealable,
)

#: the kinds of stored secret, in the order they are checked and reported
KINDS = ("signing_keys", "totp_secrets", "webhook_secrets", "pseudonym_keys")
BATCH = 500


@dataclass
class Stored:
    """One sealed secret as stored: which row, its blob, and the tenant it belongs to
    (None for the deployment's signing keys and the no-tenant audit chain)."""

    kind: str
    purpose: Purpose
    row_id: str
    blob: bytes
    tenant_id: str | None


@dataclass
class Tally:
    """What :func:`check` or :func:`reseal` found, by kind."""

    #: sealed under the current key already
    current: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    #: opened under a fallback key or in the form from before key ids (check), or
    #: re-sealed under the current key (reseal)
    resealed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    #: open under none of the keys, with why
    unopenable: dict[str, list[tuple[Stored, Unsealable]]] = field(
        default_factory=lambda: {kind: [] for kind in KINDS}
    )
    #: re-sealed, by tenant id (None: the deployment's signing keys, the no-tenant chain)
    by_tenant: dict[str | None, dict[str, int]] = field(default_factory=dict)

    @property
    def problems(self) -> int:
        return sum(len(found) for found in self.unopenable.values())


def stored_secrets(db: Session, kinds: tuple[str, ...] = KINDS) -> Iterator[Stored]:
    """Every sealed secret of the given kinds, read in batches. Signing keys: only those
    still signing or about to (not retired): a retired key only verifies, with its public
    half."""
    if "signing_keys" in kinds:
        for kid, blob in db.execute(
            select(SigningKey.kid, SigningKey.private_encrypted).where(
                SigningKey.retired_at.is_(None)
            )
        ):
            yield Stored("signing_keys", SIGNING_KEY, kid, blob, None)
    if "totp_secrets" in kinds:
        query = (
            select(User.id, User.totp_secret, User.tenant_id)
            .where(User.totp_secret.is_not(None))
            .order_by(User.id)
            .execution_options(all_tenants=True, yield_per=BATCH)
        )
        for user_id, secret, tenant_id in db.execute(query):
            if secret is not None:
                yield Stored("totp_secrets", TOTP_SECRET, user_id, secret, tenant_id)
    if "webhook_secrets" in kinds:
        query = (
            select(WebhookEndpoint.id, WebhookEndpoint.secret_encrypted, WebhookEndpoint.tenant_id)
            .order_by(WebhookEndpoint.id)
            .execution_options(all_tenants=True)
        )
        for endpoint_id, sealed, endpoint_tenant in db.execute(query):
            yield Stored("webhook_secrets", WEBHOOK_SECRET, endpoint_id, sealed, endpoint_tenant)
    if "pseudonym_keys" in kinds:
        for chain, key in db.execute(
            select(AuditHead.chain, AuditHead.pseudonym_key_sealed).order_by(AuditHead.chain)
        ):
            owner = None if chain == audit.NO_TENANT else chain
            yield Stored("pseudonym_keys", PSEUDONYM_KEY, chain, key, owner)


def check(db: Session, sealer: Sealer, kinds: tuple[str, ...] = KINDS) -> Tally:
    """Open every stored secret of ``kinds``; nothing is changed."""
    tally = Tally()
    for stored in stored_secrets(db, kinds):
        try:
            opened = sealer.opened(stored.purpose, stored.blob, stored.row_id)
        except Unsealable as error:
            tally.unopenable[stored.kind].append((stored, error))
            continue
        if opened.current:
            tally.current[stored.kind] += 1
        else:
            tally.resealed[stored.kind] += 1
    return tally


def reseal(db: Session, sealer: Sealer, *, now: datetime) -> Tally:
    """Seal again under the current key every stored secret that opens only under a
    fallback key or is in the form from before key ids. Secrets that open under no key
    are left as they are and counted in ``unopenable``. Audited as one
    ``secrets.resealed`` event per tenant, an operator's action (no actor), with that
    tenant's counts and the deployment's signing keys. Runs on an unscoped session; the
    caller commits."""
    tally = Tally()
    # Read everything first: the rewrites below must not disturb the batches being read.
    found = list(stored_secrets(db))
    for stored in found:
        try:
            opened = sealer.opened(stored.purpose, stored.blob, stored.row_id)
        except Unsealable as error:
            tally.unopenable[stored.kind].append((stored, error))
            continue
        if opened.current:
            tally.current[stored.kind] += 1
            continue
        fresh = sealer.seal(stored.purpose, opened.plaintext, stored.row_id)
        if _rewrite(db, stored, fresh):
            tally.resealed[stored.kind] += 1
            counts = tally.by_tenant.setdefault(stored.tenant_id, dict.fromkeys(KINDS, 0))
            counts[stored.kind] += 1
    deployment = tally.by_tenant.get(None, dict.fromkeys(KINDS, 0))
    for tenant_id in db.scalars(select(Tenant.id).order_by(Tenant.id)):
        own = tally.by_tenant.get(tenant_id, dict.fromkeys(KINDS, 0))
        events.record(
            db,
            "secrets.resealed",
            now=now,
            tenant_id=tenant_id,
            by="operator",
            key_id=sealer.key_id,
            signing_keys=deployment["signing_keys"],
            totp_secrets=own["totp_secrets"],
            webhook_secrets=own["webhook_secrets"],
            pseudonym_keys=own["pseudonym_keys"],
            unopenable=sum(
                1
                for found in tally.unopenable.values()
                for stored, _error in found
                if stored.tenant_id == tenant_id
            ),
        )
    db.flush()
    return tally


def _rewrite(db: Session, stored: Stored, fresh: bytes) -> bool:
    """Store ``fresh`` in place of ``stored.blob``, only if the row still holds it."""
    if stored.kind == "signing_keys":
        statement = (
            update(SigningKey)
            .where(SigningKey.kid == stored.row_id, SigningKey.private_encrypted == stored.blob)
            .values(private_encrypted=fresh)
        )
    elif stored.kind == "totp_secrets":
        statement = (
            update(User)
            .where(User.id == stored.row_id, User.totp_secret == stored.blob)
            .values(totp_secret=fresh)
        )
    elif stored.kind == "webhook_secrets":
        statement = (
            update(WebhookEndpoint)
            .where(
                WebhookEndpoint.id == stored.row_id,
                WebhookEndpoint.secret_encrypted == stored.blob,
            )
            .values(secret_encrypted=fresh)
        )
    else:
        statement = (
            update(AuditHead)
            .where(AuditHead.chain == stored.row_id, AuditHead.pseudonym_key_sealed == stored.blob)
            .values(pseudonym_key_sealed=fresh)
        )
    changed = db.execute(
        statement.execution_options(synchronize_session=False, all_tenants=True)
    ).rowcount  # type: ignore[attr-defined]
    return bool(changed == 1)
