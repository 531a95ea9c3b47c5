"""PostgreSQL for tests that must run there whatever the suite's backend (races, locks).

Fixtures (import the ones you use into your test module)::

    from tests.pg import pg_app, pg_cluster, pg_make, pg_services, pg_template, pg_url

* ``pg_cluster`` (session): a throwaway cluster on 127.0.0.1 (:class:`PostgresCluster`,
  Debian's postgresql package); the suite's own cluster when it already runs on
  PostgreSQL (``HOLDFAST_TEST_DB=postgresql``). Without PostgreSQL the test is skipped,
  or fails under ``HOLDFAST_REQUIRE_ALL=1``.
* ``pg_template`` (session): a database migrated with ``app.migrate.upgrade`` and given a
  signing key, as ``template_db`` does for SQLite.
* ``pg_url``: a fresh database cloned from the template for one test, dropped after it.
* ``pg_app`` / ``pg_services`` / ``pg_make``: the app (same settings as ``app``: frozen
  clock, test SMTP server) on that database, its services and the factory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app import Services, create_app, migrate
from app.clock import FrozenClock
from testkit import databases
from testkit.databases import PostgresCluster
from tests.conftest import SECRET, START, Factory, require_tool, sending

TEMPLATE = "holdfast_pg_template"


@pytest.fixture(scope="session")
def pg_cluster(postgres: PostgresCluster | None) -> Iterator[PostgresCluster]:
    if postgres is not None:  # the whole suite runs on PostgreSQL: share its cluster
        yield postgres
        return
    bin_dir = databases.postgres_bin()
    if bin_dir is None:
        require_tool("/usr/lib/postgresql/15/bin/initdb", "this test runs on PostgreSQL")
    assert bin_dir is not None
    cluster = PostgresCluster(bin_dir).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_template(pg_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The name of a migrated database with a signing key, to clone per test."""
    pg_cluster.admin(f'CREATE DATABASE "{TEMPLATE}"')
    folder = tmp_path_factory.mktemp("pg-template")
    app = create_app(
        {"DATABASE_URL": pg_cluster.url(TEMPLATE), "SECRET_KEY": SECRET, "MAIL_URL": "console"},
        instance_path=folder,
    )
    services: Services = app.extensions["holdfast"]
    migrate.upgrade(services.database.engine, sealer=services.sealer)
    with services.session(write=True) as db:
        db.add(services.keys.new_key(START))
        db.commit()
    services.database.dispose()  # a template must have no open connections to be cloned
    return TEMPLATE


@pytest.fixture
def pg_url(pg_cluster: PostgresCluster, pg_template: str) -> Iterator[str]:
    url = pg_cluster.clone(pg_template)
    yield url
    pg_cluster.drop(url)


@pytest.fixture
def pg_app(app_config: dict[str, Any], pg_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = create_app({**app_config, "DATABASE_URL": pg_url}, instance_path=tmp_path)
    with sending(application):
        yield application


@pytest.fixture
def pg_services(pg_app: Flask) -> Services:
    return pg_app.extensions["holdfast"]


@pytest.fixture
def pg_make(pg_services: Services, clock: FrozenClock) -> Factory:
    return Factory(pg_services, clock)
