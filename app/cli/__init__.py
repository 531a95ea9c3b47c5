"""The ``holdfast`` command: a Flask CLI group over the same core the web app uses, one
module per family of commands (db, tenants and people, keys and secrets, operations, the
demo tenant), each command one transaction (app.cli.unit). The console script's entry
point is app.cli.entry; it also owns ``holdfast serve`` (app.cli.serve), which makes each
server worker's app with the script's factory.
"""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Add every ``holdfast`` command to ``app.cli``."""
    from app.cli import db, demo, keys, oidc, operations, people

    for command in (
        db.db_group,
        people.tenant_group,
        people.user_group,
        keys.keys_group,
        keys.secrets_group,
        demo.demo,
        operations.audit_group,
        operations.purge,
        operations.worker,
        operations.backup,
        oidc.oidc_group,
    ):
        app.cli.add_command(command)
