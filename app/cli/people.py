"""``holdfast tenant …`` and ``holdfast user …``: tenants and the people in them, as an
operator. Changes go through the same core functions as the admin console, audited the
same way (with no actor and ``by: operator``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
from flask.cli import with_appcontext
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.cli.unit import CLI, fail, services, transaction
from app.core import accounts
from app.core.errors import HoldfastError
from app.models import Tenant, User


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


@tenant_group.command("list")
@with_appcontext
def tenant_list() -> None:
    """Every tenant: slug, name, people (admins), created, id."""
    with services().session() as db:
        people = dict(
            db.execute(select(User.tenant_id, func.count()).group_by(User.tenant_id)).all()
        )
        admins = dict(
            db.execute(
                select(User.tenant_id, func.count())
                .where(User.role == "admin", User.disabled.is_(False))
                .group_by(User.tenant_id)
            ).all()
        )
        rows = [
            (
                tenant.slug,
                tenant.name,
                _people(people.get(tenant.id, 0), admins.get(tenant.id, 0)),
                f"{tenant.created_at:%Y-%m-%d}",
                tenant.id,
            )
            for tenant in db.scalars(select(Tenant).order_by(Tenant.slug))
        ]
    if not rows:
        click.echo("No tenants yet: `holdfast tenant create SLUG --name NAME --admin EMAIL`.")
        return
    _table(("SLUG", "NAME", "PEOPLE", "CREATED", "ID"), rows)


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


@user_group.command("list")
@click.option("--tenant", "slug", required=True, help="Slug of the tenant.")
@with_appcontext
def user_list(slug: str) -> None:
    """The tenant's people: email, role, status, last sign-in, id."""
    with services().session() as db:
        tenant = accounts.tenant_by_slug(db, slug)
        if tenant is None:
            raise click.ClickException(f"No tenant called {slug!r}: see `holdfast tenant list`.")
        rows = [
            (
                user.email,
                user.role,
                "disabled" if user.disabled else "active",
                f"{user.last_sign_in_at:%Y-%m-%d %H:%M}" if user.last_sign_in_at else "never",
                user.id,
            )
            for user in db.scalars(
                select(User).where(User.tenant_id == tenant.id).order_by(User.email)
            )
        ]
    if not rows:
        click.echo(f"{slug} has nobody yet.")
        return
    _table(("EMAIL", "ROLE", "STATUS", "LAST SIGN-IN (UTC)", "ID"), rows)


@user_group.command("disable")
@click.argument("email")
@click.option(
    "--tenant",
    "slug",
    default=None,
    help="The tenant whose account it is (needed when the address has several).",
)
@with_appcontext
def user_disable(email: str, slug: str | None) -> None:
    """Disable a person and end their sessions at once (as an admin does in the console)."""
    from app.core import people

    with _as_operator(email, slug) as (db, user, operator):
        was_disabled = user.disabled
        ended = people.disable(db, operator, user.id, now=services().clock.now(), origin=CLI)
        label = f"{user.email} ({_slug(db, user)})"
    if was_disabled:
        click.echo(f"{label} was disabled already.")
    else:
        click.echo(f"Disabled {label}; ended {len(ended)} session{'s' if len(ended) != 1 else ''}.")


@user_group.command("enable")
@click.argument("email")
@click.option(
    "--tenant",
    "slug",
    default=None,
    help="The tenant whose account it is (needed when the address has several).",
)
@with_appcontext
def user_enable(email: str, slug: str | None) -> None:
    """Let a disabled person sign in again (their old sessions stay ended)."""
    from app.core import people

    with _as_operator(email, slug) as (db, user, operator):
        was_disabled = user.disabled
        people.enable(db, operator, user.id, now=services().clock.now(), origin=CLI)
        label = f"{user.email} ({_slug(db, user)})"
    click.echo(f"Enabled {label}." if was_disabled else f"{label} was enabled already.")


@user_group.command("role")
@click.argument("email")
@click.argument("role", type=click.Choice(["member", "admin"]))
@click.option(
    "--tenant",
    "slug",
    default=None,
    help="The tenant whose account it is (needed when the address has several).",
)
@with_appcontext
def user_role(email: str, role: str, slug: str | None) -> None:
    """Make a person a member or an admin of their tenant."""
    from app.core import people

    with _as_operator(email, slug) as (db, user, operator):
        old = user.role
        people.set_role(db, operator, user.id, role, now=services().clock.now(), origin=CLI)
        label = f"{user.email} ({_slug(db, user)})"
    click.echo(
        f"{label} is now {role} (was {old})." if old != role else f"{label} is {role} already."
    )


@contextmanager
def _as_operator(email: str, slug: str | None) -> Iterator[tuple[Session, User, Any]]:
    """A write transaction scoped to the tenant of the account with ``email`` (in tenant
    ``slug``, which must be given when the address has accounts in several), that
    account, and the operator acting on them. Refusals (unknown email or tenant, an
    address in several tenants without one named, the core's rules) become a clear
    message and exit status 1."""
    from app.core.access import Operator
    from app.db import scope_to_tenant

    try:
        with transaction() as db:
            try:
                address = accounts.normalise_email(email)
            except HoldfastError:
                address = email.strip().lower()
            found = accounts.accounts_of(db, address, enabled_only=False)
            if slug is not None:
                found = [user for user in found if _slug(db, user) == slug]
            if not found:
                where = f" in {slug!r}" if slug else ""
                raise click.ClickException(
                    f"Nobody has the email {email!r}{where}: "
                    "see `holdfast user list --tenant SLUG`."
                )
            if len(found) > 1:
                tenants = ", ".join(_slug(db, user) for user in found)
                raise click.ClickException(
                    f"{email} has an account in several tenants ({tenants}): "
                    "say which with --tenant SLUG."
                )
            [user] = found
            scope_to_tenant(db, user.tenant_id)
            yield db, user, Operator()
    except HoldfastError as error:
        fail(error)


def _people(people: int, admins: int) -> str:
    return f"{people} ({admins} admin{'s' if admins != 1 else ''})"


def _slug(db: Session, user: User) -> str:
    return db.get_one(Tenant, user.tenant_id).slug


def _table(header: tuple[str, ...], rows: Sequence[tuple[Any, ...]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )
