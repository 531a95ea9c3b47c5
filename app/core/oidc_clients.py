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

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core import events
from app.core.errors import NotFound, ValidationError
from app.core.events import Origin
from app.crypto import Hasher
from app.models import OidcClient, Tenant, new_id

MAX_URIS = 10
MAX_URI = 2000
MAX_NAME = 100
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
SECRET_PREFIX = "hfcs_"  # noqa: S105 (a prefix that names a Holdfast client secret)


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
        raise ValidationError("Enter a URI.", field=field)
    if len(uri) > MAX_URI:
        raise ValidationError(f"A URI is at most {MAX_URI} characters.", field=field)
    if re.search(r"[\s\\]", uri) or any(ord(char) < 32 or ord(char) == 127 for char in uri):
        raise ValidationError("A URI cannot contain spaces or control characters.", field=field)
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in ("https", "http") or not host:
        raise ValidationError(f"{uri} is not an absolute http(s) URI.", field=field)
    if scheme == "http" and host not in LOOPBACK_HOSTS:
        raise ValidationError(
            f"{uri}: use https (plain http only for localhost during development).", field=field
        )
    if parts.fragment or "#" in uri:
        raise ValidationError(f"{uri}: a URI here cannot have a #fragment.", field=field)
    if parts.username is not None or parts.password is not None:
        raise ValidationError(f"{uri}: leave user names and passwords out.", field=field)
    try:
        _ = parts.port
    except ValueError:
        raise ValidationError(f"{uri}: the port is not a number.", field=field) from None
    return uri


def check_uris(uris: Iterable[str], *, field: str, required: bool) -> list[str]:
    """Each URI checked (:func:`check_uri`), duplicates dropped, order kept."""
    cleaned: list[str] = []
    for uri in uris:
        checked = check_uri(uri, field=field)
        if checked not in cleaned:
            cleaned.append(checked)
    if required and not cleaned:
        raise ValidationError("Give at least one redirect URI.", field=field)
    if len(cleaned) > MAX_URIS:
        raise ValidationError(f"At most {MAX_URIS} URIs.", field=field)
    return cleaned


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
    now: datetime,
    actor_id: str | None = None,
    origin: Origin = events.SYSTEM,
) -> NewClient:
    """Register an app in ``tenant``; a confidential one gets a secret (returned once).
    Raises ValidationError (``name``, ``redirect_uri``, ``post_logout_uri``,
    ``backchannel_logout_uri``)."""
    name = " ".join((name or "").split())
    if not name or len(name) > MAX_NAME:
        raise ValidationError(f"An app's name is 1-{MAX_NAME} characters.", field="name")
    redirects = check_uris(redirect_uris, field="redirect_uri", required=True)
    post_logout = check_uris(post_logout_redirect_uris, field="post_logout_uri", required=False)
    backchannel = (
        check_uri(backchannel_logout_uri, field="backchannel_logout_uri")
        if backchannel_logout_uri
        else None
    )
    secret, secret_hash = (None, None) if public else _new_secret(hasher)
    client = OidcClient(
        id=new_id("app"),
        tenant_id=tenant.id,
        name=name,
        secret_hash=secret_hash,
        redirect_uris=redirects,
        post_logout_redirect_uris=post_logout,
        backchannel_logout_uri=backchannel,
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
        raise ValidationError("A public app has no secret.", field="secret")
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
        raise NotFound("No such app")
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
