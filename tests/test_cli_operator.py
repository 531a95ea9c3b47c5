"""The operator's commands on the test database (SQLite and PostgreSQL): listing tenants
and people, disabling, enabling and changing roles through the core, audited like the
same change in the console; and what `db upgrade` and `db current` say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic import command
from flask import Flask
from sqlalchemy import select

from app import create_app, migrate
from app.models import UserSession
from testkit.rows import events_of, user_row
from testkit.values import SECRET
from testkit.web import login

OPERATOR = {"by": "operator", "via": "cli"}


def cli(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=list(args))


def test_tenant_list_and_user_list(app, make, tenant, member, admin):
    globex = make.tenant("globex")
    make.user("kim@globex.test", globex, role="admin")
    make.user("lee@globex.test", globex, disabled=True)
    listed = cli(app, "tenant", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split() == ["SLUG", "NAME", "PEOPLE", "CREATED", "ID"]
    assert lines[1].split()[:4] == ["acme", "Acme", "2", "(1"]
    assert lines[1].split()[-1] == tenant.id
    assert lines[2].split()[:5] == ["globex", "Globex", "2", "(1", "admin)"]

    people = cli(app, "user", "list", "--tenant", "globex")
    assert people.exit_code == 0
    rows = [line.split() for line in people.output.splitlines()[1:]]
    assert [row[:3] for row in rows] == [
        ["kim@globex.test", "admin", "active"],
        ["lee@globex.test", "member", "disabled"],
    ]
    assert "sam@acme.test" not in people.output  # another tenant's people never show

    unknown = cli(app, "user", "list", "--tenant", "initech")
    assert unknown.exit_code == 1
    assert "No tenant called 'initech'" in unknown.output


def test_disable_ends_sessions_at_once_and_is_audited_as_in_the_console(
    app, client, mailbox, services, member, admin
):
    assert login(client, mailbox, member.email).status_code == 302
    assert client.get("/devices").status_code == 200

    done = cli(app, "user", "disable", "SAM@acme.test")
    assert done.exit_code == 0, done.output
    assert done.output.strip() == "Disabled sam@acme.test (acme); ended 1 session."
    assert user_row(services, member.id).disabled
    # The hot path refuses the session from its very next request.
    assert client.get("/devices").status_code == 302
    with services.session() as db:
        assert db.scalars(select(UserSession).where(UserSession.ended_at.is_(None))).all() == []
    [disabled] = events_of(services, "user.disabled")
    assert (disabled.actor_id, disabled.subject_id, disabled.tenant_id) == (
        None,
        member.id,
        member.tenant_id,
    )
    assert disabled.details == OPERATOR
    [ended] = events_of(services, "user.sessions_ended")
    assert ended.details == {"count": 1, "reason": "revoked_by_admin", **OPERATOR}
    [session_ended] = events_of(services, "session.ended")
    assert session_ended.actor_id is None

    again = cli(app, "user", "disable", "sam@acme.test")
    assert again.exit_code == 0
    assert again.output.strip() == "sam@acme.test (acme) was disabled already."
    assert len(events_of(services, "user.disabled")) == 1

    enabled = cli(app, "user", "enable", "sam@acme.test")
    assert enabled.exit_code == 0
    assert enabled.output.strip() == "Enabled sam@acme.test (acme)."
    assert not user_row(services, member.id).disabled
    [event] = events_of(services, "user.enabled")
    assert (event.actor_id, event.details) == (None, OPERATOR)
    assert login(client, mailbox, member.email).status_code == 302
    assert cli(app, "audit", "verify").exit_code == 0


def test_role_changes_keep_an_admin_in_each_tenant(app, services, make, tenant, member, admin):
    other = make.tenant("globex")
    make.user("kim@globex.test", other, role="admin")

    promoted = cli(app, "user", "role", "sam@acme.test", "admin")
    assert promoted.exit_code == 0
    assert promoted.output.strip() == "sam@acme.test (acme) is now admin (was member)."
    [event] = events_of(services, "user.role_changed")
    assert (event.actor_id, event.subject_id) == (None, member.id)
    assert event.details == {"old": "member", "new": "admin", **OPERATOR}
    same = cli(app, "user", "role", "sam@acme.test", "admin")
    assert same.output.strip() == "sam@acme.test (acme) is admin already."
    assert len(events_of(services, "user.role_changed")) == 1

    assert cli(app, "user", "role", "ada@acme.test", "member").exit_code == 0
    # sam is now acme's only admin; globex's admin does not count for acme
    last = cli(app, "user", "role", "sam@acme.test", "member")
    assert last.exit_code == 1
    assert "A tenant needs at least one admin" in last.output
    assert user_row(services, member.id).role == "admin"
    refused = cli(app, "user", "disable", "sam@acme.test")
    assert refused.exit_code == 1
    assert "A tenant needs at least one admin" in refused.output
    assert not user_row(services, member.id).disabled

    bad_role = cli(app, "user", "role", "sam@acme.test", "owner")
    assert bad_role.exit_code == 2 and "'owner' is not one of" in bad_role.output


def test_unknown_people_are_a_clear_refusal(app):
    for args in (
        ("user", "disable", "nobody@acme.test"),
        ("user", "enable", "nobody@acme.test"),
        ("user", "role", "nobody@acme.test", "admin"),
        ("user", "disable", "not an address"),
    ):
        refused = cli(app, *args)
        assert refused.exit_code == 1, args
        assert "Nobody has the email" in refused.output
        assert "Traceback" not in refused.output


# --- db upgrade and db current ---------------------------------------------------------


@pytest.fixture
def empty_app(tmp_path: Path, postgres):
    """An app on an empty database of the backend this pass runs on."""
    if postgres is None:
        url = f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        postgres.admin('CREATE DATABASE "operator_empty"')
        url = postgres.url("operator_empty")
    app = create_app(
        {"DATABASE_URL": url, "SECRET_KEY": SECRET, "MAIL_URL": "console"}, instance_path=tmp_path
    )
    yield app
    app.extensions["holdfast"].close()
    if postgres is not None:
        postgres.drop(url)


def test_db_upgrade_and_db_current_say_what_they_see(empty_app):
    head = migrate.head()
    every = migrate.between(None, head)
    assert len(every) >= 6 and every[-1] == head

    fresh = cli(empty_app, "db", "current")
    assert fresh.exit_code == 0
    assert fresh.output.strip() == (
        f"No schema yet; this release is at revision {head} ({len(every)} migrations): "
        "run `holdfast db upgrade`."
    )
    assert cli(empty_app, "db", "current", "--check").exit_code == 1

    created = cli(empty_app, "db", "upgrade")
    assert created.exit_code == 0, created.output
    assert created.output.splitlines() == [
        f"Created a fresh schema: {len(every)} migrations, now at revision {head}.",
        "Created the first token signing key.",
    ]
    again = cli(empty_app, "db", "upgrade")
    assert again.output.strip() == f"Already up to date (revision {head})."
    current = cli(empty_app, "db", "current", "--check")
    assert current.exit_code == 0
    assert current.output.strip() == f"Revision {head}: up to date with this release."

    services = empty_app.extensions["holdfast"]
    engine = services.database.engine
    config = migrate.alembic_config(engine)
    config.attributes["sealer"] = services.sealer
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, every[-3])
    behind = cli(empty_app, "db", "current", "--check")
    assert behind.exit_code == 1
    assert behind.output.strip() == (
        f"Revision {every[-3]}; this release is at {head}: 2 migrations to apply "
        f"({every[-2]}, {every[-1]}). Run `holdfast db upgrade`."
    )
    applied = cli(empty_app, "db", "upgrade")
    assert applied.exit_code == 0
    assert applied.output.strip() == (
        f"Applied 2 migrations ({every[-2]}, {every[-1]}): revision {every[-3]} -> {head}."
    )
    assert migrate.current(engine) == head
