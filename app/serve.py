"""``holdfast serve``: the production server, the same gunicorn a checkout runs with
``gunicorn -c deploy/gunicorn.conf.py wsgi:app``.

The settings come from that one file (``deploy/gunicorn.conf.py``, shipped inside the
wheel as ``app/deploy/gunicorn.conf.py``; app.paths finds it), read the way gunicorn reads
it, then ``GUNICORN_CMD_ARGS`` as gunicorn honours it, then ``--bind``. Before any worker
starts, :func:`preflight` checks that this node can serve at all, so a broken deployment
stops with the reason instead of answering 500 or 503 to every request.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from app import migrate, paths
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


def run_server(bind: str | None) -> None:
    """Run gunicorn with Holdfast until it is stopped, configured from the shipped
    ``gunicorn.conf.py``. gunicorn is imported here, not with the module: every
    ``holdfast`` command registers ``serve``, and only this one needs it."""
    from gunicorn.app.base import Application

    class Server(Application):  # type: ignore[misc]
        def init(self, parser: Any, opts: Any, args: Any) -> None:
            return None  # no gunicorn command line: holdfast serve has its own options

        def load_config(self) -> None:
            self.load_config_from_file(str(paths.GUNICORN_CONF))
            # Operators tune gunicorn with GUNICORN_CMD_ARGS, as with plain gunicorn.
            from_env = self.cfg.parser().parse_args(self.cfg.get_cmd_args_from_env())
            for name, value in vars(from_env).items():
                if value is not None and name != "args":
                    self.cfg.set(name.lower(), value)
            if bind:
                self.cfg.set("bind", [bind])

        def load(self) -> Any:
            # Called in each worker after the fork: every worker makes its own app (and
            # database connections), as `gunicorn wsgi:app` does.
            from app import create_app

            return create_app()

    Server(prog="holdfast serve").run()


@click.command("serve")
@click.option(
    "--bind",
    metavar="HOST:PORT",
    default=None,
    help="Address to listen on (default: GUNICORN_BIND, else 127.0.0.1:8000). "
    "Use 0.0.0.0:8000 in a container.",
)
@click.option(
    "--migrate",
    "migrate_first",
    is_flag=True,
    help="Run `holdfast db upgrade` before serving. For a single node (the container "
    "image runs this way); several nodes upgrade once, before any of them starts.",
)
@click.pass_context
@with_appcontext
def serve(ctx: click.Context, bind: str | None, migrate_first: bool) -> None:
    """Run the production server (gunicorn with the shipped settings: two one-thread
    workers per core; WEB_CONCURRENCY and GUNICORN_THREADS change the counts). Refuses
    to start when the database cannot be used; put nginx (TLS) in front."""
    if migrate_first:
        from app.cli import db_upgrade

        ctx.invoke(db_upgrade)
    preflight(current_app._get_current_object())  # type: ignore[attr-defined]
    sys.stdout.flush()
    run_server(bind)
