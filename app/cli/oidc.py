"""``holdfast oidc client …``: the apps that sign people in through Holdfast (OpenID
Connect; app.core.oidc_clients), registered as an operator. Audited like the admin
console's registrations (with no actor)."""

from __future__ import annotations

import json
from typing import TextIO

import click
from flask.cli import with_appcontext
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cli.unit import CLI, fail, services, transaction
from app.core import oidc_access, oidc_clients
from app.core.errors import HoldfastError
from app.models import OidcClient, Tenant


@click.group("oidc")
def oidc_group() -> None:
    """Holdfast as the OpenID Provider of a tenant's apps."""


@oidc_group.group("client")
def client_group() -> None:
    """Registered apps (OpenID Connect clients)."""


def _issuer(slug: str) -> str:
    from flask import current_app

    return f"{current_app.config['BASE_URL'].rstrip('/')}/oidc/{slug}"


@client_group.command("add")
@click.option("--tenant", "slug", required=True, help="Slug of the tenant the app belongs to.")
@click.option("--name", required=True, help="The app's name, as people see it.")
@click.option(
    "--redirect-uri", "redirect_uris", multiple=True, required=True, help="Exact; repeatable."
)
@click.option("--public", is_flag=True, help="No secret (a browser or native app): PKCE S256.")
@click.option("--post-logout-uri", "post_logout_uris", multiple=True, help="Exact; repeatable.")
@click.option("--backchannel-logout-uri", default=None, help="Where logout tokens are sent.")
@click.option(
    "--jwks-file",
    type=click.File("r"),
    default=None,
    help="The app's public keys (a JWK Set, JSON; - for stdin): private_key_jwt, no secret.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def client_add(
    slug: str,
    name: str,
    redirect_uris: tuple[str, ...],
    public: bool,
    post_logout_uris: tuple[str, ...],
    backchannel_logout_uri: str | None,
    jwks_file: TextIO | None,
    as_json: bool,
) -> None:
    """Register an app; prints its client id and (confidential apps) its secret, once.
    An app registered with --jwks-file authenticates with private_key_jwt instead."""
    now = services().clock.now()
    jwks = None
    if jwks_file is not None:
        try:
            jwks = json.load(jwks_file)
        except ValueError:
            raise click.ClickException("The JWK Set is not JSON.") from None
    try:
        with transaction() as db:
            tenant = db.scalar(select(Tenant).where(Tenant.slug == slug))
            if tenant is None:
                raise click.ClickException(f"No tenant {slug!r}.")
            made = oidc_clients.add_client(
                db,
                services().hasher,
                tenant,
                name=name,
                redirect_uris=redirect_uris,
                public=public,
                post_logout_redirect_uris=post_logout_uris,
                backchannel_logout_uri=backchannel_logout_uri,
                jwks=jwks,
                now=now,
                origin=CLI,
            )
            client_id = made.client.id
    except HoldfastError as error:
        fail(error)
    issuer = _issuer(slug)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "client_id": client_id,
                    "client_secret": made.secret,
                    "issuer": issuer,
                    "discovery": f"{issuer}/.well-known/openid-configuration",
                }
            )
        )
        return
    click.echo(f"Registered {name} in {slug}.")
    click.echo(f"Issuer:        {issuer}")
    click.echo(f"Client id:     {client_id}")
    if made.secret:
        click.echo(f"Client secret: {made.secret}")
        click.echo("The secret is shown only now: keep it in the app's configuration.")
    elif jwks is not None:
        click.echo("Signs in with its own keys (private_key_jwt): no secret.")
    else:
        click.echo("Public client: no secret; it must use PKCE (S256).")


@client_group.command("list")
@click.option("--tenant", "slug", required=True, help="Slug of the tenant.")
@with_appcontext
def client_list(slug: str) -> None:
    """The tenant's apps: client id, kind, name, redirect URIs."""
    with services().session() as db:
        tenant = db.scalar(select(Tenant).where(Tenant.slug == slug))
        if tenant is None:
            raise click.ClickException(f"No tenant {slug!r}.")
        for client in oidc_clients.clients_of(db, tenant.id):
            kind = "public" if client.is_public else "confidential"
            if client.jwks is not None:
                kind = "private_key_jwt"
            click.echo(f"{client.id}\t{kind}\t{client.name}\t{' '.join(client.redirect_uris)}")


def _tenant_app(db: Session, slug: str, client_id: str) -> OidcClient:
    """The app ``client_id`` of the tenant ``slug``. Raises ClickException when either is
    unknown (an app of another tenant is unknown here too)."""
    tenant = db.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        raise click.ClickException(f"No tenant {slug!r}.")
    client = oidc_clients.find_client(db, tenant.id, client_id)
    if client is None:
        raise click.ClickException(f"No app {client_id!r} in {slug}.")
    return client


@client_group.command("remove")
@click.option("--tenant", "slug", required=True, help="Slug of the tenant the app belongs to.")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def client_remove(slug: str, client_id: str, as_json: bool) -> None:
    """Remove an app: every sign-in to it ends (its tokens stop working; it is still sent
    their back-channel logout tokens) and its client id is refused from now on."""
    now = services().clock.now()
    with transaction() as db:
        client = _tenant_app(db, slug, client_id)
        name = client.name
        ended = oidc_access.remove_client(db, client, now=now, origin=CLI)
    if as_json:
        click.echo(
            json.dumps({"client_id": client_id, "removed": True, "sign_ins_ended": len(ended)})
        )
        return
    click.echo(f"Removed {name} ({client_id}) from {slug}. Sign-ins ended: {len(ended)}.")


@client_group.command("rotate-secret")
@click.option("--tenant", "slug", required=True, help="Slug of the tenant the app belongs to.")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def client_rotate_secret(slug: str, client_id: str, as_json: bool) -> None:
    """Make a new secret for a confidential app and print it, once; the old one stops
    working at once."""
    now = services().clock.now()
    try:
        with transaction() as db:
            client = _tenant_app(db, slug, client_id)
            secret = oidc_clients.rotate_secret(db, services().hasher, client, now=now, origin=CLI)
    except HoldfastError as error:
        fail(error)
    if as_json:
        click.echo(json.dumps({"client_id": client_id, "client_secret": secret}))
        return
    click.echo(f"Client secret: {secret}")
    click.echo("The secret is shown only now; the old one no longer works.")
