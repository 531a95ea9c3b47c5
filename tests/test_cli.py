"""The holdfast command, on a fresh database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from app import create_app
from app.demo import DEMO_ADMIN, DEMO_MEMBER
from app.models import Event, SigningKey, Tenant, User
from testkit.values import SECRET


@pytest.fixture
def fresh_app(tmp_path: Path):
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}",
            "SECRET_KEY": SECRET,
            "MAIL_URL": "console",
        },
        instance_path=tmp_path,
    )
    yield app
    app.extensions["holdfast"].close()


def run(app, *args):
    result = app.test_cli_runner().invoke(args=list(args))
    return result


def test_upgrade_then_tenant_user_and_demo(fresh_app):
    services = fresh_app.extensions["holdfast"]
    assert run(fresh_app, "db", "upgrade").exit_code == 0
    assert run(fresh_app, "db", "upgrade").exit_code == 0  # idempotent
    created = run(
        fresh_app, "tenant", "create", "acme", "--name", "Acme Ltd", "--admin", "Boss@Acme.test"
    )
    assert created.exit_code == 0, created.output
    added = run(fresh_app, "user", "add", "sam@acme.test", "--tenant", "acme")
    assert added.exit_code == 0, added.output
    admin = run(fresh_app, "user", "add", "ops@acme.test", "--tenant", "acme", "--admin")
    assert admin.exit_code == 0
    demo = run(fresh_app, "demo")
    assert DEMO_ADMIN in demo.output and DEMO_MEMBER in demo.output
    assert run(fresh_app, "demo").exit_code == 0  # safe to run again
    with services.session() as db:
        assert db.scalar(select(func.count()).select_from(SigningKey)) == 1
        roles = dict(db.execute(select(User.email, User.role)).all())
        assert roles["boss@acme.test"] == "admin"
        assert roles["sam@acme.test"] == "member"
        assert roles["ops@acme.test"] == "admin"
        assert db.scalar(select(func.count()).select_from(Tenant)) == 2
        assert (
            db.scalar(select(func.count()).select_from(Event).where(Event.kind == "user.created"))
            == 5
        )


def test_bad_input_is_a_clear_error(fresh_app):
    run(fresh_app, "db", "upgrade")
    run(fresh_app, "tenant", "create", "acme", "--name", "Acme", "--admin", "boss@acme.test")
    cases = [
        (("tenant", "create", "Not A Slug", "--name", "x", "--admin", "a@b.test"), "slug"),
        (("tenant", "create", "acme", "--name", "x", "--admin", "a@b.test"), "exists already"),
        (("user", "add", "boss@acme.test", "--tenant", "acme"), "is in Acme already"),
        (("user", "add", "not-an-email", "--tenant", "acme"), "not a valid email"),
        (("user", "add", "x@acme.test", "--tenant", "nope"), "No tenant called"),
    ]
    for args, message in cases:
        result = run(fresh_app, *args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output
        assert "Traceback" not in result.output


def test_bulk_demo_data_keeps_the_audit_trail_verifiable(fresh_app):
    run(fresh_app, "db", "upgrade")
    seeded = run(fresh_app, "demo", "--users", "20", "--sessions", "200")
    assert seeded.exit_code == 0, seeded.output
    verified = run(fresh_app, "audit", "verify", "--tenant", "demo")
    assert verified.exit_code == 0, verified.output
