"""The operator's recurring commands: ``holdfast audit verify``, ``holdfast purge``,
``holdfast worker`` and ``holdfast backup``."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select

from app import migrate
from app.cli.unit import services
from app.core import accounts, audit
from app.models import Tenant


@click.group("audit")
def audit_group() -> None:
    """The tamper-evident audit trail."""


@audit_group.command("verify")
@click.option("--tenant", "slug", default=None, help="Check only this tenant's chain.")
@with_appcontext
def audit_verify(slug: str | None) -> None:
    """Walk each tenant's audit chain and report the first broken link (exit status 1)."""

    with services().session() as db:
        tenant_id = None
        if slug is not None:
            tenant = accounts.tenant_by_slug(db, slug)
            if tenant is None:
                raise click.ClickException(f"No tenant called {slug!r}.")
            tenant_id = tenant.id
        names = {row.id: row.slug for row in db.execute(select(Tenant.id, Tenant.slug))}
        broken = 0
        for chain in audit.chains(db, tenant_id):
            verdict = audit.verify(db, chain)
            label = names.get(chain, "(no tenant)" if chain == audit.NO_TENANT else chain)
            if verdict.intact:
                click.echo(
                    f"{label}: {verdict.checked} events verified"
                    + (f" ({verdict.purged} purged before them)" if verdict.purged else "")
                    + (f", head {verdict.head_hash[:16]}" if verdict.head_hash else "")
                )
            else:
                broken += 1
                click.echo(
                    f"{label}: BROKEN after {verdict.checked} good events: {verdict.problem}",
                    err=True,
                )
    if broken:
        raise SystemExit(1)


@click.command("purge")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=100_000),
    default=1000,
    show_default=True,
    help="Rows per transaction.",
)
@with_appcontext
def purge(batch_size: int) -> None:
    """Apply every tenant's retention periods: delete old sessions, devices, events and
    codes, anonymise old IP addresses. Safe to run from cron, idempotent."""
    from app.core import retention

    done = retention.purge(
        lambda: services().session(write=True), now=services().clock.now(), batch_size=batch_size
    )
    click.echo(
        f"Purged {done.sessions} sessions, {done.devices} devices, {done.events} events, "
        f"{done.challenges} sign-in codes, {done.deliveries} webhook deliveries, "
        f"{done.mail} mail messages, {done.rate_counters} rate-limit counters, "
        f"{done.assertion_ids} used app assertion ids; "
        f"anonymised {done.session_ips + done.event_ips + done.alert_ips} IP addresses "
        f"({len(done.tenants) - 1} tenants)."
    )


@click.command("worker")
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds between polls when idle.",
)
@with_appcontext
def worker(once: bool, interval: float) -> None:
    """Send queued mail and webhook deliveries (retrying failures with backoff)."""
    from app import outbox
    from app import worker as runner

    private_ok = runner.allow_private(current_app.config)
    if once:
        mailed = outbox.deliver_due(services())
        sent = runner.deliver_due(services(), private_ok=private_ok)
        logouts = runner.deliver_logouts(services(), private_ok=private_ok)
        click.echo(
            f"Attempted {mailed} mail deliveries and {sent} webhook deliveries"
            f" ({logouts} back-channel logouts)."
        )
        return
    runner.run(services(), private_ok=private_ok, interval=interval)


@click.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@with_appcontext
def backup(path: Path) -> None:
    """Copy the SQLite database to PATH, consistently, while the app runs (never
    overwrites). On PostgreSQL, print the pg_dump line to use instead."""
    from app import backup as backups

    database = services().database
    if not database.is_sqlite:
        raise click.ClickException(
            "holdfast backup copies SQLite databases. On PostgreSQL use pg_dump (custom "
            "format, restore with pg_restore; the password comes from PGPASSWORD or "
            "~/.pgpass):\n  " + backups.pg_dump_command(database.url, path)
        )
    source = Path(database.engine.url.database or "")
    try:
        copy = backups.backup_sqlite(
            source, path.absolute(), busy_timeout=float(current_app.config["SQLITE_BUSY_TIMEOUT"])
        )
    except backups.BackupError as error:
        raise click.ClickException(str(error)) from error
    revision = migrate.current(database.engine)
    click.echo(f"Backed up {source} to {copy.path} ({copy.size} bytes, revision {revision}).")
