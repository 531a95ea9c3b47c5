"""``holdfast demo``: the demo tenant, with bulk made-up data to try the console at scale
(app.demo makes it)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import func, select

from app.cli.unit import services, transaction
from app.core import accounts, audit
from app.core.sessions import idle_timeout, lifetime
from app.demo import DEMO_ADMIN, DEMO_MEMBER, seed_bulk
from app.models import User


@click.command("demo")
@click.option(
    "--users",
    type=click.IntRange(min=0),
    default=None,
    help="Make sure the demo tenant holds at least this many people (bulk insert).",
)
@click.option(
    "--sessions",
    type=click.IntRange(min=0),
    default=None,
    help="Make sure the demo tenant holds at least this many sessions, live and "
    "ended, spread over 90 days (bulk insert).",
)
@click.option(
    "--seed",
    type=int,
    default=1,
    show_default=True,
    help="Random seed for the bulk data, so two runs make the same shapes.",
)
@with_appcontext
def demo(users: int | None, sessions: int | None, seed: int) -> None:
    """Seed a demo tenant with an admin and a member (safe to run again).

    With --users and --sessions, also fill it with made-up people, devices and sessions
    for trying the admin console at scale (1,000,000 sessions take about a minute)."""
    now = services().clock.now()
    with transaction() as db:
        tenant = accounts.tenant_by_slug(db, "demo")
        if tenant is None:
            tenant = accounts.create_tenant(db, "demo", "Demo Clinic", now=now)
        for email, role in ((DEMO_ADMIN, "admin"), (DEMO_MEMBER, "member")):
            if accounts.account_in(db, tenant.id, email) is None:
                accounts.add_user(db, tenant, email, role=role, now=now)
        tenant_id = tenant.id
    if users or sessions:
        added = seed_bulk(
            services().database.engine,
            tenant_id,
            now=now,
            users=users or 0,
            sessions=sessions or 0,
            idle_timeout=idle_timeout,
            lifetime=lifetime,
            seed=seed,
            echo=click.echo,
        )
        with transaction() as db:  # bulk rows bypassed record(): chain them onto the trail
            audit.seal_unsealed(db, audit.chain_of(tenant_id))
        click.echo(
            f"Added {added.users} people, {added.devices} devices and "
            f"{added.sessions} sessions in {added.seconds:.1f} s."
        )
    with transaction() as db:
        people = db.scalar(
            select(func.count()).select_from(User).where(User.tenant_id == tenant_id)
        )
    click.echo(f"Demo tenant 'demo' ({people} people). Sign in as:")
    click.echo(f"  admin:  {DEMO_ADMIN}")
    click.echo(f"  member: {DEMO_MEMBER}")
    click.echo("The sign-in code is printed in this terminal (console mail).")
