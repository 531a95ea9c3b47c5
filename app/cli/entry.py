"""The ``holdfast`` console script: the command group that makes the app (from
HOLDFAST_* settings) for the commands that need it. Kept apart from app.cli's commands,
which the app factory registers, so that the factory and the commands never import each
other. ``serve`` is the script's own: each gunicorn worker makes its app with the
script's factory."""

from __future__ import annotations

import os
import sys

import click
from flask import Flask
from flask.cli import FlaskGroup

from app.cli.serve import serve
from app.version import __version__


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
# `holdfast --version`: this release, answered without making the app.
click.version_option(__version__, prog_name="holdfast", message="%(prog)s %(version)s")(cli)
cli.add_command(serve)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        # The development server speaks plain HTTP: Secure cookies would never come back.
        os.environ.setdefault("HOLDFAST_COOKIE_SECURE", "false")
        os.environ.setdefault("HOLDFAST_LOG_FORMAT", "text")
        # Static files read afresh on each request, so an edited one shows on reload.
        os.environ.setdefault("HOLDFAST_STATIC_AUTOREFRESH", "true")
    cli.main(prog_name="holdfast")
