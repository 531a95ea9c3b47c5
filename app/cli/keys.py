"""``holdfast keys rotate`` (token signing keys) and ``holdfast secrets …`` (what is
sealed under HOLDFAST_SECRET_KEY)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from app import tokens
from app.cli.unit import services, transaction
from app.core import keys


@click.group("keys")
def keys_group() -> None:
    """Token signing keys."""


@keys_group.command("rotate")
@click.option(
    "--end-sessions", is_flag=True, help="Also end every session now (everyone signs in again)."
)
@click.option(
    "--leaked",
    is_flag=True,
    help="The signing key got out: sign with the new key and stop accepting the old one "
    "at once, and end every session (verifiers refuse new tokens until they refetch the "
    "JWKS).",
)
@with_appcontext
def keys_rotate(end_sessions: bool, leaked: bool) -> None:
    """Publish a new signing key now; it signs once every node and verifier has it.

    The old key keeps verifying until the tokens it signed expire (docs/api.md has the
    timeline)."""
    ring = services().keys
    delay = tokens.publication_delay(ring.refresh_seconds, current_app.config["JWKS_MAX_AGE"])
    with transaction() as db:
        rotation = keys.rotate_signing_key(
            db,
            ring,
            now=services().clock.now(),
            publish_for=delay,
            end_sessions=end_sessions,
            leaked=leaked,
        )
    ring.reload()
    ended = f" Ended {rotation.sessions_ended} sessions." if end_sessions or leaked else ""
    click.echo(
        f"New signing key {rotation.kid}, in the JWKS now, signing from "
        f"{rotation.signs_from:%Y-%m-%d %H:%M:%S} UTC.{ended}"
    )


@click.group("secrets")
def secrets_group() -> None:
    """Stored secrets and the secret key (HOLDFAST_SECRET_KEY and its fallbacks)."""


@secrets_group.command("check")
@with_appcontext
def secrets_check() -> None:
    """Check that every stored secret opens; exit status 1 (saying why) when one does not."""
    from app import preflight
    from app.core import resealing

    problems = preflight.startup_problems(current_app)
    for problem in problems:
        click.echo(f"Error: {problem}", err=True)
    if problems:
        raise SystemExit(1)
    with services().session() as db:
        tally = resealing.check(db, services().sealer)
    current = sum(tally.current.values())
    other = sum(tally.resealed.values())
    click.echo(
        f"All {current + other} stored secrets open. {current} are sealed under the "
        f"current key (key id {services().sealer.key_id})"
        + (
            f", {other} under a fallback key or in the older form: run `holdfast secrets rotate`."
            if other
            else "."
        )
    )


@secrets_group.command("rotate")
@with_appcontext
def secrets_rotate() -> None:
    """Re-seal every stored secret under the current HOLDFAST_SECRET_KEY (run after
    moving the old key to HOLDFAST_SECRET_KEY_FALLBACKS; safe to run again)."""
    from app import preflight
    from app.core import resealing

    with transaction() as db:
        tally = resealing.reseal(db, services().sealer, now=services().clock.now())
    services().keys.reload()
    done = ", ".join(
        f"{tally.resealed[kind]} {preflight.NAMES[kind][tally.resealed[kind] != 1]}"
        for kind in resealing.KINDS
    )
    already = sum(tally.current.values())
    click.echo(
        f"Re-sealed under key id {services().sealer.key_id}: {done} "
        f"({already} were under it already)."
    )
    if tally.problems:
        for problem in preflight.startup_problems(current_app):
            click.echo(f"Error: {problem}", err=True)
        raise SystemExit(1)
