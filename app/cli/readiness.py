"""Whether this node can serve, asked before it starts (``holdfast serve``) and while a
container waits for its database (``holdfast db --wait``). The answer is
:class:`NotReady` with the cause and the fix, never a node that answers 500 or 503."""

from __future__ import annotations

import time

import click
from flask import Flask

from app import migrate
from app.core import stats_ops
from app.preflight import startup_problems


class NotReady(click.ClickException):
    """This node must not start; the message names the cause and the fix."""


def preflight(app: Flask) -> None:
    """Refuse to start a node that could not serve: raises :class:`NotReady` when the
    database does not answer, has not run this release's migrations (the fix:
    ``holdfast db upgrade``), or holds secrets that open under none of the configured
    keys (app.preflight names the key and the fix). The same facts ``/readyz`` reports,
    checked once, and thoroughly, before the workers start."""
    services = app.extensions["holdfast"]
    try:
        with services.session() as db:
            stats_ops.ping(db)
            stored = migrate.behind(db)
        problems = [] if stored is not None else startup_problems(app)
    except Exception as error:  # any driver's error means the same here
        raise NotReady(
            f"The database does not answer ({type(error).__name__}: {error}). "
            "Check HOLDFAST_DATABASE_URL and that the database server is running."
        ) from error
    finally:
        # The workers are forked from this process: they must not share its connections.
        services.database.dispose()
    if problems:
        raise NotReady("\n".join(problems))
    if stored is not None:
        state = (
            "The database has no Holdfast schema yet."
            if stored == "none"
            else f"The database is at revision {stored}, behind this release."
        )
        raise NotReady(
            f"{state} Run `holdfast db upgrade` first, once for the whole deployment "
            "(or start this single node with `holdfast serve --migrate`)."
        )


def wait_for_database(app: Flask, seconds: float, *, pause: float = 1.0) -> None:
    """Return once the database answers; raise :class:`NotReady` if it does not within
    ``seconds``. For a container that starts beside its database server (compose.yaml's
    migrate step), where start-up order is not readiness."""
    services = app.extensions["holdfast"]
    deadline = time.monotonic() + seconds
    told = False
    while True:
        try:
            with services.session() as db:
                stats_ops.ping(db)
            return
        except Exception as error:  # any driver's error: not up yet
            if time.monotonic() + pause > deadline:
                raise NotReady(
                    f"The database did not answer within {seconds:g} s "
                    f"({type(error).__name__}: {error}). Check HOLDFAST_DATABASE_URL."
                ) from error
            if not told:
                click.echo("Waiting for the database to answer...", err=True)
                told = True
            services.database.dispose()
            time.sleep(pause)
