"""Shared fixtures: a migrated database per test, a real SMTP server, a moving clock,
factories, and a ``login`` helper that goes through the real email-code flow.

Set ``HOLDFAST_REQUIRE_ALL=1`` (CI does) to turn a missing tool (Chromium, PostgreSQL,
nginx) into a failure instead of a skip.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from app import Services, create_app, migrate
from app.clock import FrozenClock
from app.core import accounts
from app.db import Database, PlainConnections
from app.mail import plain_text
from app.models import Tenant, User
from testkit import databases
from testkit.cluster import REDIS_SERVER, Redis, Servers
from testkit.databases import PostgresCluster

SECRET = "test-secret-" + "x" * 40
START = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
REQUIRE_ALL = os.environ.get("HOLDFAST_REQUIRE_ALL") == "1"
UA_MAC_CHROME = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
UA_IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


@contextmanager
def statements_run(
    target: Engine | Database | PlainConnections, *, begins: bool = False
) -> Iterator[list[str]]:
    """The SQL statements run inside the block, in order: on an engine, on the hot
    path's plain connections (app.db.PlainConnections), or on both of a Database. With
    ``begins``, also "BEGIN" where an engine's transaction starts (including where the
    driver begins implicitly)."""
    seen: list[str] = []
    engine = target.engine if isinstance(target, Database) else target
    plain = target.plain if isinstance(target, Database) else target

    def statement(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        seen.append(sql)

    def begin(_conn: Any) -> None:
        seen.append("BEGIN")

    listeners: list[tuple[str, Any]] = [("before_cursor_execute", statement)]
    if begins:
        listeners.append(("begin", begin))
    with ExitStack() as undo:
        if isinstance(engine, Engine):
            for name, listener in listeners:
                event.listen(engine, name, listener)
                undo.callback(event.remove, engine, name, listener)
        if isinstance(plain, PlainConnections):
            plain.watchers.append(seen.append)
            undo.callback(plain.watchers.remove, seen.append)
        yield seen


def writes_in(statements: list[str]) -> list[str]:
    """The INSERT, UPDATE and DELETE statements among ``statements``."""
    return [s for s in statements if s.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))]


def require_tool(path_or_name: str, why: str) -> str:
    """The tool's path; a skip when missing, or a failure under HOLDFAST_REQUIRE_ALL=1."""
    found = shutil.which(path_or_name) or (path_or_name if Path(path_or_name).exists() else None)
    if found:
        return found
    message = f"{path_or_name} is not installed ({why})"
    if REQUIRE_ALL:
        pytest.fail(message + "; HOLDFAST_REQUIRE_ALL=1 requires it")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- mail ---------------------------------------------------------------------------------


class Mailbox:
    """Everything the SMTP test server received."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        #: the apps of the running test, whose queued mail :meth:`count` waits for
        self.senders: list[Services] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        with self._lock:
            self.messages.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
        return "250 OK"

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if m["To"] == address]

    def count(self, address: str) -> int:
        """How many mails ``address`` has had, once every app of the test has sent what
        it queued (see :func:`outbox_drained`): take it before asking for a mail, then
        wait for number count + 1."""
        for services in list(self.senders):
            outbox_drained(services)
        return len(self.to(address))

    def wait_for(self, address: str, count: int = 1, timeout: float = 5.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.to(address)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"no mail number {count} to {address} within {timeout}s")

    def newest(self, address: str, subject_part: str, timeout: float = 5.0) -> EmailMessage:
        """The newest mail to ``address`` whose subject contains ``subject_part``, waiting
        for one to arrive."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.to(address) if subject_part in m["Subject"]]
            if found:
                return found[-1]
            if time.monotonic() > deadline:
                raise AssertionError(f"no mail about {subject_part!r} to {address} in {timeout}s")
            time.sleep(0.02)

    def last_code(self, address: str, count: int = 1, timeout: float = 5.0) -> str:
        """The code in the newest sign-in code mail among the ``count``-th mail to
        ``address`` and those after it. Mail goes out after the request that queued it, so
        a mail queued earlier (a new-device notice) may arrive after a test counted the
        mails it had: such mails are passed over, and this waits for a code mail."""
        deadline = time.monotonic() + timeout
        while True:
            for mail in reversed(self.to(address)[count - 1 :]):
                match = re.search(r"code is (\d{6})", plain_text(mail))
                if match:
                    return match.group(1)
            if time.monotonic() > deadline:
                raise AssertionError(f"no code mail number {count} to {address} within {timeout}s")
            time.sleep(0.02)


def outbox_drained(services: Services, timeout: float = 5.0) -> None:
    """Wait until the outbox holds no message that is due or on its first way out (the
    sender handed each to the relay or gave it up; a claimed message's due time lies
    ahead, but no attempt was written down yet): from then on the mailbox holds all there
    is to hold, so a test can check that some mail did not come, or how many did."""
    from sqlalchemy import func, or_, select

    from app.models import OutboxMessage

    deadline = time.monotonic() + timeout
    while True:
        with services.session() as db:
            due = db.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(
                    OutboxMessage.status == "pending",
                    or_(
                        OutboxMessage.attempts == 0,
                        OutboxMessage.next_attempt_at <= services.clock.now(),
                    ),
                )
            )
        if not due:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{due} messages still due in the outbox after {timeout}s")
        time.sleep(0.02)


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    _SMTP_BOXES[f"smtp://127.0.0.1:{port}"] = mailbox
    yield mailbox, port
    controller.stop()


@pytest.fixture
def mailbox(smtp_server: tuple[Mailbox, int]) -> Mailbox:
    box, _port = smtp_server
    box.clear()
    return box


# --- database and app -----------------------------------------------------------------------


def _migrate(url: str, folder: Path) -> None:
    """Migrations plus a signing key: what `holdfast db upgrade` does."""
    app = create_app(
        {"DATABASE_URL": url, "SECRET_KEY": SECRET, "MAIL_URL": "console"}, instance_path=folder
    )
    services: Services = app.extensions["holdfast"]
    migrate.upgrade(services.database.engine, sealer=services.sealer)
    with services.session(write=True) as db:
        db.add(services.keys.new_key(START))
        db.commit()
    services.database.dispose()


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
    _migrate(cluster.url("holdfast_template"), Path(cluster.folder))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated once, with a signing key; each test gets a copy."""
    folder = tmp_path_factory.mktemp("template")
    path = folder / "holdfast.db"
    _migrate(f"sqlite:///{path}", folder)
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


@contextmanager
def sending(application: Flask) -> Iterator[Flask]:
    """The app with its mail sender running from the start (a web process starts it on
    its first request), so mail a test queues through the core is delivered too; the
    test's mailbox knows to wait for it (Mailbox.count). Closed at the end."""
    services: Services = application.extensions["holdfast"]
    box = _mailbox_of(application)
    if services.sender is not None:
        services.sender.start()
    if box is not None:
        box.senders.append(services)
    try:
        yield application
    finally:
        if box is not None:
            box.senders[:] = [other for other in box.senders if other is not services]
        services.close()


def _mailbox_of(application: Flask) -> Mailbox | None:
    return _SMTP_BOXES.get(str(application.config.get("MAIL_URL")))


#: the test SMTP server's mailbox by the MAIL_URL that reaches it
_SMTP_BOXES: dict[str, Mailbox] = {}


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


@dataclass
class Factory:
    services: Services
    clock: FrozenClock

    def tenant(self, slug: str = "acme", **policy: Any) -> Tenant:
        with self.services.session(write=True) as db:
            tenant = accounts.create_tenant(db, slug, slug.title(), now=self.clock.now())
            for name, value in policy.items():
                setattr(tenant, name, value)
            db.commit()
            return tenant

    def user(self, email: str, tenant: Tenant, role: str = "member", **fields: Any) -> User:
        with self.services.session(write=True) as db:
            tenant_row = db.get_one(Tenant, tenant.id)
            user = accounts.add_user(db, tenant_row, email, role=role, now=self.clock.now())
            for name, value in fields.items():
                setattr(user, name, value)
            db.commit()
            return user

    def policy(self, tenant: Tenant, **policy: Any) -> None:
        with self.services.session(write=True) as db:
            row = db.get_one(Tenant, tenant.id)
            for name, value in policy.items():
                setattr(row, name, value)
            db.commit()


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

CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = CSRF_FIELD.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def request_code(client: FlaskClient, email: str, **headers: str) -> Any:
    page = client.get("/login", headers=headers)
    return client.post(
        "/login", data={"email": email, "csrf_token": csrf_from(page.text)}, headers=headers
    )


def login(
    client: FlaskClient,
    mailbox: Mailbox,
    email: str,
    *,
    user_agent: str = UA_MAC_CHROME,
    trust: bool = False,
) -> Any:
    """Sign in as ``email`` through /login and the emailed code; returns the final answer."""
    headers = {"User-Agent": user_agent}
    before = mailbox.count(email)
    response = request_code(client, email, **headers)
    assert response.status_code == 302, response.text
    code = mailbox.last_code(email, before + 1)
    page = client.get("/login/code", headers=headers)
    data = {"code": code, "csrf_token": csrf_from(page.text)}
    if trust:
        data["trust_device"] = "y"
    return client.post("/login/code", data=data, headers=headers)


def second_step(client: FlaskClient, code: str, *, path: str = "/login/mfa", **headers: str) -> Any:
    """Answer a sign-in's second step (the app's code or a recovery code) on ``path``
    (``/login/again/mfa`` for a fresh sign-in); returns the answer."""
    page = client.get(path, headers=headers)
    assert page.status_code == 200, page.text
    return client.post(
        path, data={"code": code, "csrf_token": csrf_from(page.text)}, headers=headers
    )


@pytest.fixture
def signed_in(client: FlaskClient, mailbox: Mailbox, member: User) -> FlaskClient:
    response = login(client, mailbox, member.email)
    assert response.status_code == 302 and response.location == "/devices", response.text
    return client


def session_id_of(client: FlaskClient, services: Services, clock: FrozenClock) -> str:
    cookie = client.get_cookie("holdfast_session")
    assert cookie is not None
    return services.keys.verify(cookie.value, clock.now()).session_id


# --- a real server and Chromium, for browser tests -----------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


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
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, live_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def live_make(live_app: Flask) -> Factory:
    from app.clock import SystemClock

    return Factory(live_app.extensions["holdfast"], SystemClock())  # type: ignore[arg-type]


def browser_login(page: Any, base_url: str, mailbox: Mailbox, email: str) -> None:
    """Sign in through the real pages in a Playwright page."""
    before = mailbox.count(email)
    page.goto(f"{base_url}/login")
    page.fill("#email", email)
    page.click("button[type=submit]")
    page.wait_for_url("**/login/code")
    page.fill("#code", mailbox.last_code(email, before + 1))
    page.click("form button[type=submit]")
    page.wait_for_url("**/devices")


def wait_until(page: Any, expression: str, timeout: float = 15.0) -> None:
    """Poll a JavaScript expression from Python until it is truthy. Playwright's own
    wait_for_function evaluates a string inside the page, which the CSP (no
    'unsafe-eval') may refuse; page.evaluate goes through the debugger and is not."""
    deadline = time.monotonic() + timeout
    while True:
        if page.evaluate(expression):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {expression}")
        time.sleep(0.1)


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
