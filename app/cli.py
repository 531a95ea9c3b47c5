"""The ``holdfast`` command: a Flask CLI group over the same core the web app uses.

Each command runs in one transaction and commits once at the end.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app import migrate, tokens
from app.core import accounts, events
from app.core.errors import HoldfastError
from app.models import SigningKey, Tenant, User, UserSession


def services():  # type: ignore[no-untyped-def]
    return current_app.extensions["holdfast"]


@contextmanager
def transaction() -> Iterator[Session]:
    db = services().session(write=True)
    try:
        yield db
        db.commit()
    except BaseException:
        db.rollback()
        raise
    finally:
        db.close()


def fail(error: HoldfastError) -> None:
    raise click.ClickException(error.message)


# --- db ---------------------------------------------------------------------------------


@click.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@with_appcontext
def db_upgrade() -> None:
    """Apply migrations and make sure a token signing key exists."""
    migrate.upgrade(services().database.engine)
    ensure_signing_key()
    click.echo("Database is up to date.")


@db_group.command("revision")
@click.option("-m", "--message", required=True)
@with_appcontext
def db_revision(message: str) -> None:
    """Write a new migration from the difference between the models and the database."""
    migrate.revision(services().database.engine, message)


def ensure_signing_key() -> None:
    with transaction() as db:
        if db.scalar(select(func.count()).select_from(SigningKey)) == 0:
            db.add(services().keys.new_key(services().clock.now()))


# --- tenants and people ---------------------------------------------------------------------


@click.group("tenant")
def tenant_group() -> None:
    """Tenants (organisations)."""


@tenant_group.command("create")
@click.argument("slug")
@click.option("--name", required=True, help="Display name of the tenant.")
@click.option("--admin", "admin_email", required=True, help="Email of its first admin.")
@with_appcontext
def tenant_create(slug: str, name: str, admin_email: str) -> None:
    """Create a tenant and its first admin."""
    now = services().clock.now()
    try:
        with transaction() as db:
            tenant = accounts.create_tenant(db, slug, name, now=now)
            admin = accounts.add_user(db, tenant, admin_email, role="admin", now=now)
    except HoldfastError as error:
        fail(error)
    click.echo(f"Created tenant {tenant.slug} ({tenant.id}) with admin {admin.email}.")


@click.group("user")
def user_group() -> None:
    """People."""


@user_group.command("add")
@click.argument("email")
@click.option("--tenant", "slug", required=True, help="Slug of the tenant.")
@click.option("--admin", is_flag=True, help="Make the person a tenant admin.")
@with_appcontext
def user_add(email: str, slug: str, admin: bool) -> None:
    """Add a person to a tenant."""
    now = services().clock.now()
    try:
        with transaction() as db:
            tenant = accounts.tenant_by_slug(db, slug)
            if tenant is None:
                raise click.ClickException(f"No tenant called {slug!r}.")
            user = accounts.add_user(
                db, tenant, email, role="admin" if admin else "member", now=now
            )
    except HoldfastError as error:
        fail(error)
    click.echo(f"Added {user.email} ({user.role}) to {slug}.")


# --- keys ---------------------------------------------------------------------------------


@click.group("keys")
def keys_group() -> None:
    """Token signing keys."""


@keys_group.command("rotate")
@click.option(
    "--end-sessions", is_flag=True, help="Also end every session now (everyone signs in again)."
)
@with_appcontext
def keys_rotate(end_sessions: bool) -> None:
    """Sign new tokens with a new key; the old key verifies until its tokens expire."""
    now = services().clock.now()
    with transaction() as db:
        longest = db.scalar(select(func.max(Tenant.trusted_lifetime))) or 0
        longest = max(longest, db.scalar(select(func.max(Tenant.absolute_lifetime))) or 0)
        key = tokens.rotate(db, services().keys, now, verify_for=timedelta(seconds=longest))
        ended = 0
        if end_sessions:
            ended = db.execute(
                update(UserSession)
                .where(UserSession.ended_at.is_(None))
                .values(ended_at=now, end_reason="keys_rotated")
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
        for tenant_id in db.scalars(select(Tenant.id)):
            events.record(
                db,
                "keys.rotated",
                now=now,
                tenant_id=tenant_id,
                kid=key.kid,
                ended_sessions=end_sessions,
            )
    services().keys.reload()
    click.echo(
        f"New signing key {key.kid}." + (f" Ended {ended} sessions." if end_sessions else "")
    )


# --- demo ---------------------------------------------------------------------------------

DEMO_ADMIN = "admin@demo.holdfast.test"
DEMO_MEMBER = "sam@demo.holdfast.test"


@click.command("demo")
@with_appcontext
def demo() -> None:
    """Seed a demo tenant with an admin and a member (safe to run again)."""
    now = services().clock.now()
    with transaction() as db:
        tenant = accounts.tenant_by_slug(db, "demo")
        if tenant is None:
            tenant = accounts.create_tenant(db, "demo", "Demo Clinic", now=now)
        for email, role in ((DEMO_ADMIN, "admin"), (DEMO_MEMBER, "member")):
            if accounts.find_user_by_email(db, email) is None:
                accounts.add_user(db, tenant, email, role=role, now=now)
        people = db.scalar(
            select(func.count()).select_from(User).where(User.tenant_id == tenant.id)
        )
    click.echo(f"Demo tenant 'demo' ({people} people). Sign in as:")
    click.echo(f"  admin:  {DEMO_ADMIN}")
    click.echo(f"  member: {DEMO_MEMBER}")
    click.echo("The sign-in code is printed in this terminal (console mail).")


def register(app: Flask) -> None:
    for command in (db_group, tenant_group, user_group, keys_group, demo):
        app.cli.add_command(command)


def _create_app() -> Flask:
    from app import create_app

    return create_app()


cli = FlaskGroup(
    name="holdfast",
    create_app=_create_app,
    add_version_option=False,
    load_dotenv=False,
    help="Holdfast: sessions and devices.",
)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        # The development server speaks plain HTTP: Secure cookies would never come back.
        os.environ.setdefault("HOLDFAST_COOKIE_SECURE", "false")
    cli.main(prog_name="holdfast")
