"""Migrations: an existing database with data upgrades cleanly, and the models match the
schema the migrations build (so autogenerate would find nothing to add)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app import create_app, migrate
from app.models import Base
from testkit.values import SECRET

FIRST = "202611230911"
OLD_TENANT = """
INSERT INTO tenants (id, slug, name, created_at, idle_timeout, absolute_lifetime,
    extend_on_activity, trusted_lifetime, trusted_outlives_absolute, max_sessions_per_user,
    limit_mode, notify_new_device)
VALUES ('ten_1', 'a', 'A', '2026-01-01 00:00:00+00', 1800, 43200, true, 86400, true, 10,
    'evict_oldest', true)
"""


@pytest.fixture
def empty_url(tmp_path: Path, postgres):
    """An empty database on the backend this pass of the suite runs on."""
    if postgres is None:
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    postgres.admin('CREATE DATABASE "migration_test"')
    url = postgres.url("migration_test")
    yield url
    postgres.drop(url)


def test_upgrade_keeps_existing_rows(empty_url, tmp_path):
    app = create_app(
        {"DATABASE_URL": empty_url, "SECRET_KEY": SECRET, "MAIL_URL": "console"},
        instance_path=tmp_path,
    )
    engine = app.extensions["holdfast"].database.engine
    try:
        migrate.upgrade(engine, FIRST)
        with engine.begin() as connection:
            connection.execute(sa.text(OLD_TENANT))
            connection.execute(
                sa.text(
                    "INSERT INTO users (id, email, role, disabled, created_at, tenant_id) VALUES"
                    " ('usr_1', 'a@a.test', 'admin', false, '2026-01-01 00:00:00+00', 'ten_1')"
                )
            )
        migrate.upgrade(engine)
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT email FROM users")).scalar() == "a@a.test"
            assert connection.execute(sa.text("SELECT slug FROM tenants")).scalar() == "a"
            context = MigrationContext.configure(connection, opts={"compare_type": False})
            differences = [
                diff
                for diff in compare_metadata(context, Base.metadata)
                if not (
                    isinstance(diff, tuple)
                    and diff[0] == "remove_index"
                    and diff[1].name.startswith("sqlite_autoindex")
                )
            ]
            assert differences == []
    finally:
        engine.dispose()


def test_a_node_is_not_ready_on_a_schema_behind_its_release(empty_url, tmp_path):
    """/readyz holds traffic back from a node whose release has migrations the database
    has not run (its statements may name what is not there yet, such as the hot path's
    SQLite INDEXED BY), and lets it through once `holdfast db upgrade` ran, or when the
    database is newer than the node (the previous release during a rolling deploy)."""
    app = create_app(
        {"DATABASE_URL": empty_url, "SECRET_KEY": SECRET, "MAIL_URL": "console"},
        instance_path=tmp_path,
    )
    engine = app.extensions["holdfast"].database.engine
    client = app.test_client()
    try:
        never = client.get("/readyz")
        assert never.status_code == 503
        assert never.json["code"] == "migrations_pending"
        migrate.upgrade(engine, "202611231025")
        behind = client.get("/readyz")
        assert behind.status_code == 503
        assert behind.json == {
            "error": "The database is at revision 202611231025; run `holdfast db upgrade`.",
            "code": "migrations_pending",
        }
        migrate.upgrade(engine)
        assert client.get("/readyz").json == {"status": "ready"}
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE alembic_version SET version_num = '209901010000'"))
        assert client.get("/readyz").status_code == 200  # a newer release migrated it
    finally:
        app.extensions["holdfast"].close()
