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
from collections.abc import Callable
from typing import Any

import click
from flask import Flask
from flask.cli import ScriptInfo, with_appcontext

from app import paths
from app.cli.readiness import preflight
from app.internals import current_application


def run_server(bind: str | None, make_app: Callable[[], Flask]) -> None:
    """Run gunicorn with Holdfast until it is stopped, configured from the shipped
    ``gunicorn.conf.py``; each worker makes its app with ``make_app``. gunicorn is
    imported here, not with the module: only this command needs it."""
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
            return make_app()

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
        from app.cli.db import db_upgrade

        ctx.invoke(db_upgrade)
    preflight(current_application())
    sys.stdout.flush()
    script = ctx.find_object(ScriptInfo)
    if script is None or script.create_app is None:
        raise click.ClickException("holdfast serve runs from the holdfast command")
    run_server(bind, script.create_app)
