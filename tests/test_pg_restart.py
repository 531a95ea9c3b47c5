"""PostgreSQL restarted under load: a gunicorn node serves clients that hammer the session
check (with live tokens and with tokens of sessions ended before the restart) and keep
signing in (JSON API and the sign-in pages), while the database is stopped and started
again (a clean shutdown, and a crash that recovery replays from the WAL).

Counted: zero wrong accepts (no 200 for an ended session, ever); zero lost rows (every
sign-in answered 201 or 302 has its session row and audit event afterwards); requests
during the outage answer 503, never 500; the node serves again on its own afterwards.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from app import create_app
from app.clock import SystemClock
from app.models import Event, UserSession
from testkit import databases
from testkit.cluster import GUNICORN, Browser, Node, Servers, call, holdfast
from testkit.databases import PostgresCluster
from testkit.mail import Mailbox
from testkit.rows import Factory
from testkit.tools import require_tool
from testkit.values import SECRET
from testkit.web import csrf_from

HAMMERS = 3
API_SIGN_INS = 2
OUTAGE_SECONDS = 2.0


@dataclass
class Outcome:
    """Every request the clients made, with when it started and ended."""

    entries: list[tuple[float, float, str, int]] = field(default_factory=list)
    signed_in: list[str] = field(default_factory=list)  # session ids answered 201/302
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, started: float, what: str, status: int) -> None:
        with self.lock:
            self.entries.append((started, time.monotonic(), what, status))

    def session(self, session_id: str) -> None:
        with self.lock:
            self.signed_in.append(session_id)


@dataclass
class Setup:
    cluster: PostgresCluster
    node: Node
    make: Factory


@pytest.fixture
def setup(smtp_server: tuple[Mailbox, int], tmp_path: Path) -> Iterator[Setup]:
    require_tool(str(GUNICORN), "the node runs under gunicorn")
    bin_dir = databases.postgres_bin()
    if bin_dir is None:
        require_tool("/usr/lib/postgresql/15/bin/initdb", "the restart test needs PostgreSQL")
    cluster = PostgresCluster(bin_dir).start()  # type: ignore[arg-type]
    servers = Servers()
    application = None
    try:
        cluster.admin('CREATE DATABASE "holdfast"')
        _box, smtp_port = smtp_server
        settings = {
            "HOLDFAST_DATABASE_URL": cluster.url("holdfast"),
            "HOLDFAST_SECRET_KEY": SECRET,
            "HOLDFAST_MAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
            "HOLDFAST_COOKIE_SECURE": "false",
            "HOLDFAST_RATELIMIT_CODES": "1000 per minute",
            "HOLDFAST_RATELIMIT_CODES_PER_IP": "1000 per minute",
            "HOLDFAST_RATELIMIT_CHECKS": "1000 per minute",
            "HOLDFAST_RATELIMIT_CHECKS_PER_IP": "1000 per minute",
        }
        holdfast(settings, "db", "upgrade")
        node = servers.node(settings, label="node", workers=2, threads=1)
        application = create_app(
            {"DATABASE_URL": cluster.url("holdfast"), "SECRET_KEY": SECRET, "MAIL_URL": "console"},
            instance_path=tmp_path,
        )
        services = application.extensions["holdfast"]
        yield Setup(cluster, node, Factory(services, SystemClock()))  # type: ignore[arg-type]
    finally:
        if application is not None:
            application.extensions["holdfast"].close()
        try:
            servers.close()
        finally:
            cluster.stop()


def api_sign_in(base_url: str, mailbox: Mailbox, email: str) -> tuple[int, dict]:
    """(status of the last step, its body): 201 with the session, or where it stopped."""
    before = mailbox.count(email)
    asked = call(f"{base_url}/api/auth/login", "POST", json_body={"email": email})
    if asked.status != 202:
        return asked.status, {}
    code = mailbox.last_code(email, before + 1)
    body = {"challengeId": asked.json()["challengeId"], "code": code}
    made = call(f"{base_url}/api/auth/verify", "POST", json_body=body)
    return made.status, made.json() if made.status == 201 else {}


def page_sign_in(base_url: str, mailbox: Mailbox, email: str) -> tuple[int, str | None]:
    """Through the sign-in pages: (status of the last step, session id on a 302)."""
    browser = Browser(base_url)
    page = browser.get("/login")
    if page.status != 200:
        return page.status, None
    before = mailbox.count(email)
    asked = browser.post("/login", {"email": email, "csrf_token": csrf_from(page.text)})
    if asked.status != 302:
        return asked.status, None
    page = browser.get("/login/code")
    if page.status != 200:
        return page.status, None
    code = mailbox.last_code(email, before + 1)
    signed = browser.post("/login/code", {"code": code, "csrf_token": csrf_from(page.text)})
    if signed.status != 302 or "holdfast_session" not in browser.cookies:
        return signed.status, None
    return 302, _session_id(browser.cookies["holdfast_session"])


def errors_in(node: Node) -> str:
    """The node's logged errors, for a failure message."""
    found = []
    for line in node.log.read_text().splitlines():
        if '"exception"' in line:
            entry = json.loads(line)
            found.append(f"{entry['message']}: ...{entry['exception'][-700:]}")
    return "\n".join(found)


def _session_id(token: str) -> str:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sid"]


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restart_under_load(setup: Setup, mailbox: Mailbox, mode: str):
    url = setup.node.url
    tenant = setup.make.tenant("restart", max_sessions_per_user=0)
    hammer_people = [setup.make.user(f"h{n}@restart.test", tenant) for n in range(HAMMERS)]
    signing_people = [setup.make.user(f"s{n}@restart.test", tenant) for n in range(API_SIGN_INS)]
    page_person = setup.make.user("page@restart.test", tenant)

    live, ended = [], []
    for person in hammer_people:
        _status, made = api_sign_in(url, mailbox, person.email)
        live.append(made["token"])
        _status, gone = api_sign_in(url, mailbox, person.email)
        assert call(f"{url}/api/auth/logout", "POST", token=gone["token"]).status == 204
        ended.append(gone["token"])

    outcome = Outcome()
    stop = threading.Event()

    def hammer(live_token: str, ended_token: str) -> None:
        while not stop.is_set():
            for what, token in (("live", live_token), ("ended", ended_token)):
                started = time.monotonic()
                outcome.add(started, what, call(f"{url}/auth/verify", token=token).status)

    def sign_ins(email: str, pages: bool) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                if pages:
                    status, session_id = page_sign_in(url, mailbox, email)
                else:
                    status, made = api_sign_in(url, mailbox, email)
                    session_id = made.get("sessionId")
            except AssertionError:  # the code mail never came: its request was refused
                status, session_id = -1, None
            outcome.add(started, "sign-in", status)
            if session_id is not None:
                outcome.session(session_id)
            if status not in (201, 302):
                time.sleep(0.05)

    threads = [threading.Thread(target=hammer, args=pair) for pair in zip(live, ended, strict=True)]
    threads += [threading.Thread(target=sign_ins, args=(p.email, False)) for p in signing_people]
    threads.append(threading.Thread(target=sign_ins, args=(page_person.email, True)))
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        setup.cluster.pause(mode)
        down_at = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        up_at = time.monotonic()
        setup.cluster.resume()
        back_at = time.monotonic()
        time.sleep(2.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=20)
    assert not any(thread.is_alive() for thread in threads), "a client did not stop"

    entries = outcome.entries
    statuses = {(what, status) for _s, _e, what, status in entries}
    assert all(status != 500 for _s, _e, _w, status in entries), errors_in(setup.node)
    # Zero wrong accepts: an ended session is refused before, during and after the restart.
    assert ("ended", 200) not in statuses
    assert {status for _s, _e, what, status in entries if what == "ended"} <= {401, 503}
    assert {status for _s, _e, what, status in entries if what == "live"} <= {200, 503}
    # During the outage every check answers 503 (never a guess either way) ...
    during = [
        status for s, e, what, status in entries if s > down_at and e < up_at and what != "sign-in"
    ]
    assert during and set(during) == {503}, sorted(set(during))
    # ... and afterwards the node serves again by itself.
    after = [(what, status) for s, _e, what, status in entries if s > back_at + 1.0]
    assert ("live", 200) in after and ("ended", 401) in after
    assert all(
        status == (200 if what == "live" else 401) for what, status in after if what != "sign-in"
    )
    assert any(status in (201, 302) for what, status in after if what == "sign-in")

    # Zero lost rows: every sign-in answered 201 or 302 has its session and audit event.
    assert len(outcome.signed_in) >= 2
    with setup.make.services.session() as db:
        rows = set(db.scalars(select(UserSession.id).where(UserSession.id.in_(outcome.signed_in))))
        audited = set(
            db.scalars(
                select(Event.session_id).where(
                    Event.kind == "session.created", Event.session_id.in_(outcome.signed_in)
                )
            )
        )
    assert rows == set(outcome.signed_in)
    assert audited == set(outcome.signed_in)
