"""Shared fixtures: a migrated database per test, a real SMTP server, a moving clock,
factories, a browser and real servers. The helpers the fixtures and tests use (signing
in through the real email-code flow, rows, the mailbox) live in the ``testkit`` package,
which the benchmarks share; import them from there, never from this file.

Set ``HOLDFAST_REQUIRE_ALL=1`` (CI does) to turn a missing tool (Chromium, PostgreSQL,
nginx) into a failure instead of a skip.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from app import Services, create_app
from app.clock import FrozenClock, SystemClock
from app.models import Tenant, User
from testkit import databases
from testkit.browser import CHROMIUM, CHROMIUM_ARGS, served
from testkit.cluster import REDIS_SERVER, Redis, Servers, free_port
from testkit.databases import PostgresCluster
from testkit.mail import MAILBOXES, Mailbox, sending
from testkit.oidc import Receiver, receiving
from testkit.rows import Factory, prepare_database
from testkit.tools import require_tool
from testkit.values import SECRET, START
from testkit.web import login, sign_in

# --- mail ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    MAILBOXES[f"smtp://127.0.0.1:{port}"] = mailbox
    yield mailbox, port
    controller.stop()


@pytest.fixture
def mailbox(smtp_server: tuple[Mailbox, int]) -> Mailbox:
    box, _port = smtp_server
    box.clear()
    return box


# --- database and app -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster | None]:
    """A throwaway PostgreSQL cluster when the suite runs on PostgreSQL, else None."""
    if databases.BACKEND != "postgresql":
        yield None
        return
    bin_dir = databases.postgres_bin()
    if bin_dir is None:
        pytest.fail("HOLDFAST_TEST_DB=postgresql but PostgreSQL is not installed")
    cluster = PostgresCluster(bin_dir).start()
    cluster.admin('CREATE DATABASE "holdfast_template"')
    prepare_database(cluster.url("holdfast_template"), Path(cluster.folder))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated once, with a signing key; each test gets a copy."""
    folder = tmp_path_factory.mktemp("template")
    path = folder / "holdfast.db"
    prepare_database(f"sqlite:///{path}", folder)
    return path


@pytest.fixture
def database_url(
    tmp_path: Path, template_db: Path, postgres: PostgresCluster | None
) -> Iterator[str]:
    """A fresh, migrated database for one test, on the backend the suite runs on."""
    if postgres is not None:
        url = postgres.clone("holdfast_template")
        yield url
        postgres.drop(url)
        return
    path = tmp_path / "holdfast.db"
    shutil.copy(template_db, path)
    yield f"sqlite:///{path}"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def app_config(
    database_url: str, smtp_server: tuple[Mailbox, int], clock: FrozenClock
) -> dict[str, Any]:
    _mailbox, port = smtp_server
    return {
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET,
        "MAIL_URL": f"smtp://127.0.0.1:{port}",
        "MAIL_FROM": "Holdfast <no-reply@holdfast.test>",
        "BASE_URL": "http://localhost",
        "COOKIE_SECURE": False,
        "CLOCK": clock,
        "RATELIMIT_CODES": "1000 per minute",
        "RATELIMIT_CODES_PER_IP": "1000 per minute",
        "RATELIMIT_CHECKS": "1000 per minute",
        "RATELIMIT_CHECKS_PER_IP": "1000 per minute",
        "TESTING": True,
    }


@pytest.fixture
def app(app_config: dict[str, Any], tmp_path: Path) -> Iterator[Flask]:
    """The app, with its mail sender running from the start (a web process starts it on
    its first request), so mail that a test queues through the core is delivered too."""
    application = create_app(app_config, instance_path=tmp_path)
    with sending(application):
        yield application


@pytest.fixture
def new_app(app_config: dict[str, Any], tmp_path: Path) -> Iterator[Any]:
    """Make another app on the test's database with some settings changed."""
    made: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        application = create_app({**app_config, **overrides}, instance_path=tmp_path)
        made.append(application)
        stack.enter_context(sending(application))
        return application

    with ExitStack() as stack:
        yield build


@pytest.fixture
def services(app: Flask) -> Services:
    return app.extensions["holdfast"]


@pytest.fixture
def db(services: Services) -> Iterator[Session]:
    """A session for arranging and checking state directly (commit what you arrange)."""
    session = services.session(write=True)
    yield session
    session.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# --- factories ------------------------------------------------------------------------------


@pytest.fixture
def make(services: Services, clock: FrozenClock) -> Factory:
    return Factory(services, clock)


@pytest.fixture
def tenant(make: Factory) -> Tenant:
    return make.tenant("acme")


@pytest.fixture
def member(make: Factory, tenant: Tenant) -> User:
    return make.user("sam@acme.test", tenant)


# --- signing in through the real flow -----------------------------------------------------


@pytest.fixture
def signed_in(client: FlaskClient, mailbox: Mailbox, member: User) -> FlaskClient:
    response = login(client, mailbox, member.email)
    assert response.status_code == 302 and response.location == "/devices", response.text
    return client


@pytest.fixture
def admin(make: Factory, tenant: Tenant) -> User:
    """An admin of the test tenant, Ada."""
    return make.user("ada@acme.test", tenant, role="admin")


@pytest.fixture
def admin_client(app: Flask, mailbox: Mailbox, admin: User) -> FlaskClient:
    """A browser signed in as :func:`admin` through the real code flow."""
    return sign_in(app, mailbox, admin.email)


# --- a real server and Chromium, for browser tests -----------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An app's back-channel logout endpoint (testkit.oidc.Receiver), served while the
    test runs."""
    with receiving() as found:
        yield found


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's Chromium, never a downloaded browser (pytest-playwright's own fixture)."""
    return {
        **browser_type_launch_args,
        "executable_path": require_tool(CHROMIUM, "browser tests drive Debian's chromium"),
        "args": CHROMIUM_ARGS,
    }


@pytest.fixture
def live_app(app_config: dict[str, Any], tmp_path: Path) -> Iterator[Flask]:
    """The app on the real clock, for a server a browser talks to."""
    application = create_app({**app_config, "CLOCK": None}, instance_path=tmp_path)
    with sending(application):
        yield application


@pytest.fixture
def live_server(live_app: Flask) -> Iterator[str]:
    """:func:`live_app` served on 127.0.0.1 for a browser; its base URL."""
    with served(live_app) as url:
        yield url


@pytest.fixture
def live_make(live_app: Flask) -> Factory:
    return Factory(live_app.extensions["holdfast"], SystemClock())  # type: ignore[arg-type]


# --- servers started for a test (testkit/cluster.py) ------------------------------------------


@pytest.fixture
def servers() -> Iterator[Servers]:
    stack = Servers()
    yield stack
    stack.close()


@pytest.fixture
def redis(servers: Servers) -> Redis:
    """A real redis-server on 127.0.0.1, stopped after the test."""
    require_tool(REDIS_SERVER, "shared rate limits and caches need redis-server")
    return servers.redis()


# --- PostgreSQL whatever the suite's backend (races, locks) -------------------------------
#
# * ``pg_cluster`` (session): a throwaway cluster on 127.0.0.1 (:class:`PostgresCluster`,
#   Debian's postgresql package); the suite's own cluster when it already runs on
#   PostgreSQL (``HOLDFAST_TEST_DB=postgresql``). Without PostgreSQL the test is skipped,
#   or fails under ``HOLDFAST_REQUIRE_ALL=1``.
# * ``pg_template`` (session): a database migrated and given a signing key, as
#   ``template_db`` does for SQLite.
# * ``pg_url``: a fresh database cloned from the template for one test, dropped after it.
# * ``pg_app`` / ``pg_services`` / ``pg_make``: the app (same settings as ``app``: frozen
#   clock, test SMTP server) on that database, its services and the factory.

PG_TEMPLATE = "holdfast_pg_template"


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
    pg_cluster.admin(f'CREATE DATABASE "{PG_TEMPLATE}"')
    folder = tmp_path_factory.mktemp("pg-template")
    prepare_database(pg_cluster.url(PG_TEMPLATE), folder)
    return PG_TEMPLATE


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
