"""The apps a tenant signs its people into through OpenID Connect (Holdfast as the
OpenID Provider; the protocol itself is app.web.oidc_server, on Authlib).

* **Registration.** A tenant admin (or the operator, ``holdfast oidc client add``)
  registers an app: a name, its redirect URIs, optionally post-logout URIs and a
  back-channel logout URI, and whether it is *public* (a browser or native app that
  cannot keep a secret: PKCE S256 is then required) or *confidential* (a server: it
  gets a secret, shown once, stored only as a keyed hash, and PKCE is accepted).
* **Exact URIs.** Redirect and post-logout URIs are compared as exact strings, never
  as prefixes or patterns (RFC 9700 §4.1.3): each must be an absolute ``https`` URI, or
  ``http`` on a loopback host (``localhost``, ``127.0.0.1``, ``[::1]``) for development,
  without a fragment or user info.
* **First party.** Every app here is registered by the tenant's admin, so it is first
  party: signing in to it needs no consent screen (docs/oidc.md says so).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.core import events
from app.core.errors import N_, NotFound, ValidationError
from app.core.events import Origin
from app.crypto import Hasher
from app.models import OidcAssertionJti, OidcClient, OidcClientPerson, Tenant, User, new_id

MAX_URIS = 10
MAX_URI = 2000
MAX_NAME = 100
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
SECRET_PREFIX = "hfcs_"  # noqa: S105 (a prefix that names a Holdfast client secret)
MAX_KEYS = 10
MAX_JWKS = 20_000  # characters of JSON
#: key types an app may register, and the members that would make a key private
KEY_TYPES = frozenset({"EC", "RSA", "OKP"})
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


@dataclass
class NewClient:
    client: OidcClient
    #: the client secret (None for a public client), shown once
    secret: str | None


def check_uri(uri: str, *, field: str) -> str:
    """``uri`` stripped, if it may be registered: absolute, ``https`` (or ``http`` on a
    loopback host), with a host, and without fragment or user info. Raises
    ValidationError naming ``field``."""
    uri = (uri or "").strip()
    if not uri:
        raise ValidationError(N_("Enter a URI."), field=field)
    if len(uri) > MAX_URI:
        raise ValidationError(
            N_("A URI is at most %(max)s characters."), words={"max": MAX_URI}, field=field
        )
    if re.search(r"[\s\\]", uri) or any(ord(char) < 32 or ord(char) == 127 for char in uri):
        raise ValidationError(N_("A URI cannot contain spaces or control characters."), field=field)
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in ("https", "http") or not host:
        raise ValidationError(
            N_("%(uri)s is not an absolute http(s) URI."), words={"uri": uri}, field=field
        )
    if scheme == "http" and host not in LOOPBACK_HOSTS:
        raise ValidationError(
            N_("%(uri)s: use https (plain http only for localhost during development)."),
            words={"uri": uri},
            field=field,
        )
    if parts.fragment or "#" in uri:
        raise ValidationError(
            N_("%(uri)s: a URI here cannot have a #fragment."), words={"uri": uri}, field=field
        )
    if parts.username is not None or parts.password is not None:
        raise ValidationError(
            N_("%(uri)s: leave user names and passwords out."), words={"uri": uri}, field=field
        )
    try:
        _ = parts.port
    except ValueError:
        raise ValidationError(
            N_("%(uri)s: the port is not a number."), words={"uri": uri}, field=field
        ) from None
    return uri


def check_uris(uris: Iterable[str], *, field: str, required: bool) -> list[str]:
    """Each URI checked (:func:`check_uri`), duplicates dropped, order kept."""
    cleaned: list[str] = []
    for uri in uris:
        checked = check_uri(uri, field=field)
        if checked not in cleaned:
            cleaned.append(checked)
    if required and not cleaned:
        raise ValidationError(N_("Give at least one redirect URI."), field=field)
    if len(cleaned) > MAX_URIS:
        raise ValidationError(N_("At most %(max)s URIs."), words={"max": MAX_URIS}, field=field)
    return cleaned


def check_name(name: str) -> str:
    """``name`` with its spaces tidied, if it is 1 to MAX_NAME characters. Raises
    ValidationError (``name``)."""
    name = " ".join((name or "").split()) if isinstance(name, str) else ""
    if not name or len(name) > MAX_NAME:
        raise ValidationError(
            N_("An app's name is 1-%(max)s characters."), words={"max": MAX_NAME}, field="name"
        )
    return name


def check_jwks(jwks: object) -> dict[str, Any]:
    """``jwks`` if it is a JWK Set an app may register for private_key_jwt: 1 to MAX_KEYS
    public EC, RSA or OKP keys (never a private member), each one a key joserfc reads.
    Raises ValidationError (``jwks``)."""
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys or len(keys) > MAX_KEYS:
        raise ValidationError(
            N_('Give a JWK Set: {"keys": [...]} with 1 to %(max)s public keys.'),
            words={"max": MAX_KEYS},
            field="jwks",
        )
    if len(json.dumps(jwks)) > MAX_JWKS:
        raise ValidationError(
            N_("A JWK Set is at most %(max)s characters."), words={"max": MAX_JWKS}, field="jwks"
        )
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") not in KEY_TYPES:
            raise ValidationError(N_("Each key is an EC, RSA or OKP public key."), field="jwks")
        if PRIVATE_MEMBERS & set(key):
            raise ValidationError(
                N_("A key here must be public: leave its private part out."), field="jwks"
            )
    try:
        KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError):
        raise ValidationError(N_("That JWK Set cannot be read."), field="jwks") from None
    return {"keys": keys}


def _new_secret(hasher: Hasher) -> tuple[str, str]:
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    return secret, hasher.hash("oidc-client-secret", secret)


def add_client(
    db: Session,
    hasher: Hasher,
    tenant: Tenant,
    *,
    name: str,
    redirect_uris: Iterable[str],
    public: bool = False,
    post_logout_redirect_uris: Iterable[str] = (),
    backchannel_logout_uri: str | None = None,
    jwks: object = None,
    now: datetime,
    actor_id: str | None = None,
    origin: Origin = events.SYSTEM,
) -> NewClient:
    """Register an app in ``tenant``; a confidential one gets a secret (returned once),
    unless it registers its public keys (``jwks``, a JWK Set): it then authenticates with
    private_key_jwt and has no secret. Raises ValidationError (``name``, ``redirect_uri``,
    ``post_logout_uri``, ``backchannel_logout_uri``, ``jwks``)."""
    name = check_name(name)
    redirects = check_uris(redirect_uris, field="redirect_uri", required=True)
    post_logout = check_uris(post_logout_redirect_uris, field="post_logout_uri", required=False)
    backchannel = (
        check_uri(backchannel_logout_uri, field="backchannel_logout_uri")
        if backchannel_logout_uri
        else None
    )
    keys = None
    if jwks is not None:
        if public:
            raise ValidationError(
                N_("A public app has no keys: it signs in with PKCE alone."), field="jwks"
            )
        keys = check_jwks(jwks)
    secret, secret_hash = (None, None) if public or keys else _new_secret(hasher)
    client = OidcClient(
        id=new_id("app"),
        tenant_id=tenant.id,
        name=name,
        secret_hash=secret_hash,
        redirect_uris=redirects,
        post_logout_redirect_uris=post_logout,
        backchannel_logout_uri=backchannel,
        jwks=keys,
        created_at=now,
        created_by=actor_id,
    )
    db.add(client)
    db.flush()
    events.record(
        db,
        "oidc.client_added",
        now=now,
        tenant_id=tenant.id,
        origin=origin,
        actor_id=actor_id,
        client_id=client.id,
        name=name,
        public=public,
        auth_method=client.auth_method,
        redirect_uris=redirects,
    )
    return NewClient(client, secret)


def rotate_secret(
    db: Session,
    hasher: Hasher,
    client: OidcClient,
    *,
    now: datetime,
    actor_id: str | None = None,
    origin: Origin = events.SYSTEM,
) -> str:
    """A new secret for a confidential app (the old one stops working at once), returned
    once. Raises ValidationError for a public app, which has none."""
    if client.is_public:
        raise ValidationError(N_("A public app has no secret."), field="secret")
    if client.jwks is not None:
        raise ValidationError(
            N_("This app signs in with its own keys (private_key_jwt): it has no secret."),
            field="secret",
        )
    secret, client.secret_hash = _new_secret(hasher)
    events.record(
        db,
        "oidc.client_secret_rotated",
        now=now,
        tenant_id=client.tenant_id,
        origin=origin,
        actor_id=actor_id,
        client_id=client.id,
    )
    return secret


def secret_matches(hasher: Hasher, client: OidcClient, secret: str) -> bool:
    """Whether ``secret`` is the confidential app's current secret (constant time)."""
    if client.secret_hash is None or not isinstance(secret, str) or not secret:
        return False
    return hasher.matches(client.secret_hash, "oidc-client-secret", secret)


def find_client(db: Session, tenant_id: str, client_id: str) -> OidcClient | None:
    """The app ``client_id`` if it is registered in ``tenant_id`` and not removed. An app
    of another tenant is not found: each issuer knows only its own tenant's apps."""
    if not isinstance(client_id, str) or not client_id:
        return None
    client = db.scalar(
        select(OidcClient)
        .where(OidcClient.id == client_id, OidcClient.tenant_id == tenant_id)
        .execution_options(all_tenants=True)
    )
    if client is None or client.removed_at is not None:
        return None
    return client


def tenant_client(db: Session, tenant_id: str, client_id: str) -> OidcClient:
    """:func:`find_client`, or NotFound."""
    client = find_client(db, tenant_id, client_id)
    if client is None:
        raise NotFound(N_("No such app"))
    return client


def clients_of(db: Session, tenant_id: str) -> list[OidcClient]:
    """The tenant's registered apps (not removed), by name."""
    return list(
        db.scalars(
            select(OidcClient)
            .where(OidcClient.tenant_id == tenant_id, OidcClient.removed_at.is_(None))
            .order_by(OidcClient.name)
            .execution_options(all_tenants=True)
        )
    )


def change_client(
    db: Session,
    client: OidcClient,
    *,
    name: str | None = None,
    redirect_uris: Iterable[str] | None = None,
    post_logout_redirect_uris: Iterable[str] | None = None,
    backchannel_logout_uri: str | None = None,
    clear_backchannel: bool = False,
    jwks: object = None,
    now: datetime,
    actor_id: str | None = None,
    origin: Origin = events.SYSTEM,
) -> list[str]:
    """Change any of the app's name and URIs (None: left as it is; ``clear_backchannel``
    removes the back-channel URI). Whether it is public or confidential never changes
    after registration (a secret cannot be taken back from a public app's users, nor
    given to one safely). Checks everything before changing anything; records
    ``oidc.client_changed`` with the names of what changed. Returns those names. ``jwks``
    replaces the keys of an app registered with keys (to rotate them). Raises
    ValidationError (``name``, ``redirect_uri``, ``post_logout_uri``,
    ``backchannel_logout_uri``, ``jwks``)."""
    changes: dict[str, object] = {}
    if name is not None:
        changes["name"] = check_name(name)
    if redirect_uris is not None:
        changes["redirect_uris"] = check_uris(redirect_uris, field="redirect_uri", required=True)
    if post_logout_redirect_uris is not None:
        changes["post_logout_redirect_uris"] = check_uris(
            post_logout_redirect_uris, field="post_logout_uri", required=False
        )
    if clear_backchannel:
        changes["backchannel_logout_uri"] = None
    elif backchannel_logout_uri is not None:
        changes["backchannel_logout_uri"] = check_uri(
            backchannel_logout_uri, field="backchannel_logout_uri"
        )
    if jwks is not None:
        if client.jwks is None:
            raise ValidationError(
                N_("Only an app registered with keys (private_key_jwt) can change them."),
                field="jwks",
            )
        changes["jwks"] = check_jwks(jwks)
    changed = [key for key, value in changes.items() if getattr(client, key) != value]
    for key in changed:
        setattr(client, key, changes[key])
    if changed:
        db.flush()
        events.record(
            db,
            "oidc.client_changed",
            now=now,
            tenant_id=client.tenant_id,
            origin=origin,
            actor_id=actor_id,
            client_id=client.id,
            name=client.name,
            changed=changed,
        )
    return changed


# --- who may use an app -----------------------------------------------------------------


def may_use(db: Session, client: OidcClient, user_id: str) -> bool:
    """Whether the person ``user_id`` may sign in to ``client``: everyone of the tenant
    may use an app that is not restricted; a restricted one only the people chosen."""
    if not client.restricted:
        return True
    return (
        db.scalar(
            select(OidcClientPerson.user_id)
            .where(OidcClientPerson.client_id == client.id, OidcClientPerson.user_id == user_id)
            .execution_options(all_tenants=True)
        )
        is not None
    )


def chosen_people(db: Session, client: OidcClient) -> list[User]:
    """The people chosen for ``client`` (kept while it is open to everyone), by address."""
    return list(
        db.scalars(
            select(User)
            .join(OidcClientPerson, OidcClientPerson.user_id == User.id)
            .where(OidcClientPerson.client_id == client.id)
            .order_by(User.email)
            .execution_options(all_tenants=True)
        )
    )


def people_to_choose(db: Session, tenant_id: str, *, limit: int = 1000) -> list[User]:
    """The tenant's people an admin may choose for an app, by address."""
    return list(
        db.scalars(
            select(User)
            .where(User.tenant_id == tenant_id)
            .order_by(User.email)
            .limit(limit)
            .execution_options(all_tenants=True)
        )
    )


# --- private_key_jwt --------------------------------------------------------------------


def use_assertion_jti(
    db: Session, client: OidcClient, jti: str, *, expires_at: datetime, now: datetime
) -> bool:
    """Spend the ``jti`` of one of ``client``'s assertions: True the first time, False if
    it was used before (a replay, RFC 7523 §3). Kept until ``expires_at`` (the
    assertion's ``exp``: after that the assertion is refused anyway). Atomic: of two
    requests with the same jti at once, one wins."""
    db.execute(
        delete(OidcAssertionJti)
        .where(OidcAssertionJti.client_id == client.id, OidcAssertionJti.expires_at <= now)
        .execution_options(synchronize_session=False, all_tenants=True)
    )
    insert = sqlite_insert if db.get_bind().dialect.name == "sqlite" else postgresql_insert
    spent = db.execute(
        insert(OidcAssertionJti)
        .values(
            tenant_id=client.tenant_id,
            client_id=client.id,
            jti_hash=hashlib.sha256(jti.encode()).hexdigest(),
            expires_at=expires_at,
        )
        .on_conflict_do_nothing(
            index_elements=[OidcAssertionJti.client_id, OidcAssertionJti.jti_hash]
        )
        .returning(OidcAssertionJti.jti_hash)
        .execution_options(all_tenants=True)
    )
    # A row comes back only when it was inserted (rowcount is not reliable here on
    # every driver).
    return spent.first() is not None
