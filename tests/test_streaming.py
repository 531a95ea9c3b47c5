"""Streamed exports give their database connection back: after it is sent, and when the
client goes away halfway (app.web.streaming). Before, each audit-log export left its
connection checked out, and a few dozen exports took a worker's whole pool."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert
from werkzeug.serving import make_server

from app.clock import SystemClock
from app.models import Event
from testkit.cluster import Browser
from testkit.mail import sending
from testkit.rows import Factory

EXPORTS = 200
POOL = 5
EVENTS = 1500


@pytest.fixture
def site(app_config, tmp_path) -> Iterator[tuple[str, Any]]:
    """The app on the real clock with a pool of five connections, served on 127.0.0.1."""
    from app import create_app

    application = create_app(
        {**app_config, "CLOCK": None, "DATABASE_POOL_SIZE": POOL}, instance_path=tmp_path / "s"
    )
    server = make_server("127.0.0.1", 0, application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with sending(application):
        yield f"http://127.0.0.1:{server.server_port}", application.extensions["holdfast"]
        server.shutdown()
        thread.join(timeout=5)


def sign_in(browser: Browser, mailbox, email: str) -> None:
    import re

    page = browser.get("/login")
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    assert browser.post("/login", {"email": email, "csrf_token": token}).status == 302
    page = browser.get("/login/code")
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    code = mailbox.last_code(email)
    assert browser.post("/login/code", {"code": code, "csrf_token": token}).status == 302


def export(base_url: str, cookies: dict[str, str], path: str, *, abandon: bool) -> int:
    """GET ``path``; read it all, or only its first kilobyte and hang up."""
    port = int(base_url.rsplit(":", 1)[1])
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    if abandon:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            raw.sendall(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n".encode()
            )
            head = raw.recv(1024)
        # ... and the client went away halfway
        return int(head.split(b" ", 2)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path, headers={"Cookie": cookie})
    response = connection.getresponse()
    body = response.read()
    assert body.count(b"\n") > EVENTS, body[:200]
    connection.close()
    return response.status


def test_exports_finished_or_abandoned_leave_no_connection_checked_out(site, mailbox):
    base_url, services = site
    factory = Factory(services, SystemClock())  # type: ignore[arg-type]
    tenant = factory.tenant("exports")
    factory.user("boss@exports.test", tenant, role="admin")
    now = SystemClock().now()
    with services.database.engine.begin() as connection:
        connection.execute(
            insert(Event),
            [
                {
                    "tenant_id": tenant.id,
                    "at": now - timedelta(seconds=n),
                    "kind": "session.created",
                    "ip": "203.0.113.9",
                    "details": {"n": n, "pad": "x" * 80},
                }
                for n in range(EVENTS)
            ],
        )
    browser = Browser(base_url)
    sign_in(browser, mailbox, "boss@exports.test")
    pool = services.database.engine.pool

    statuses = [
        export(base_url, browser.cookies, "/admin/audit.csv", abandon=number % 3 == 0)
        for number in range(EXPORTS)
    ]
    assert statuses == [200] * EXPORTS
    # The server noticed every hang-up and closed those bodies too.
    assert pool.checkedout() == 0, pool.status()
    # And it keeps answering, pages that need the pool included.
    assert browser.get("/admin/audit").status == 200
    assert pool.checkedout() == 0


def test_a_report_abandoned_halfway_gives_its_connection_back(site, mailbox):
    import re

    base_url, services = site
    factory = Factory(services, SystemClock())  # type: ignore[arg-type]
    tenant = factory.tenant("reports")
    factory.user("boss@reports.test", tenant, role="admin")
    browser = Browser(base_url)
    sign_in(browser, mailbox, "boss@reports.test")
    pool = services.database.engine.pool
    today = SystemClock().now().date().isoformat()
    for _ in range(3 * POOL):
        page = browser.get("/admin/reports")
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
        answer = browser.post(
            "/admin/reports",
            {"kind": "events", "first": today, "last": today, "csrf_token": token},
        )
        assert answer.status == 200, answer.text[:300]
    assert pool.checkedout() == 0, pool.status()
