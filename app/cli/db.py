"""``holdfast db …``: the schema (migrations) and the first signing key."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import func, select

from app import migrate
from app.cli.unit import services, transaction
from app.models import SigningKey


@click.group("db")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0,
    metavar="SECONDS",
    help="First wait up to SECONDS for the database to answer (a container that "
    "starts beside its database server).",
)
@with_appcontext
def db_group(wait: float) -> None:
    """Database schema."""
    if wait:
        from app.cli.readiness import wait_for_database

        wait_for_database(current_app, wait)


@db_group.command("upgrade")
@with_appcontext
def db_upgrade() -> None:
    """Apply migrations and make sure a token signing key exists; say what was done.

    Then check that the stored secrets open under HOLDFAST_SECRET_KEY or a fallback:
    when some do not, say why and how to fix it, and exit with status 1."""
    from app import preflight

    done = migrate.upgrade(services().database.engine, sealer=services().sealer)
    head = migrate.head()
    if done.before is None:
        click.echo(
            f"Created a fresh schema: {len(done.applied)} migrations, now at revision {done.after}."
        )
    elif done.applied:
        count = len(done.applied)
        click.echo(
            f"Applied {count} migration{'s' if count != 1 else ''} "
            f"({', '.join(done.applied)}): revision {done.before} -> {done.after}."
        )
    elif not migrate.is_known(done.before):
        click.echo(
            f"The database is at revision {done.before}, newer than this release "
            f"({head}): nothing to do."
        )
    else:
        click.echo(f"Already up to date (revision {done.after}).")
    if ensure_signing_key():
        click.echo("Created the first token signing key.")
    problems = preflight.startup_problems(current_app)
    for problem in problems:
        click.echo(f"Error: {problem}", err=True)
    if problems:
        raise SystemExit(1)


@db_group.command("current")
@click.option("--check", is_flag=True, help="Exit with status 1 unless up to date.")
@with_appcontext
def db_current(check: bool) -> None:
    """The database's revision against this release's newest one."""
    stored = migrate.current(services().database.engine)
    head = migrate.head()
    if stored is None:
        pending = migrate.between(None, head)
        click.echo(
            f"No schema yet; this release is at revision {head} ({len(pending)} migrations): "
            "run `holdfast db upgrade`."
        )
    elif stored == head:
        click.echo(f"Revision {stored}: up to date with this release.")
    elif not migrate.is_known(stored):
        click.echo(
            f"Revision {stored}: newer than this release ({head}); a later release migrated it."
        )
    else:
        pending = migrate.between(stored, head)
        click.echo(
            f"Revision {stored}; this release is at {head}: {len(pending)} "
            f"migration{'s' if len(pending) != 1 else ''} to apply ({', '.join(pending)}). "
            "Run `holdfast db upgrade`."
        )
    if check and stored != head:
        raise SystemExit(1)


@db_group.command("revision")
@click.option("-m", "--message", required=True)
@with_appcontext
def db_revision(message: str) -> None:
    """Write a new migration from the difference between the models and the database."""
    migrate.revision(services().database.engine, message)


def ensure_signing_key() -> bool:
    """Make the first token signing key if there is none; whether it made one."""
    with transaction() as db:
        if db.scalar(select(func.count()).select_from(SigningKey)) == 0:
            db.add(services().keys.new_key(services().clock.now()))
            return True
    return False
