"""Several nodes: two gunicorn nodes on one PostgreSQL and one Redis, behind a real nginx
load balancer (deploy/nginx.conf, round robin), all on 127.0.0.1.

Checked: a session made through node A works on node B (and through nginx's auth_request
in front of another application); ending it on A is refused on B on the very next
request; the concurrent session limit holds with parallel sign-ins spread over both nodes;
killing a node mid-traffic loses nothing.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app import create_app
from app.clock import SystemClock
from app.models import Challenge, Device, Event, User, UserSession
from testkit import databases
from testkit.cluster import (
    GUNICORN,
    NGINX,
    REDIS_SERVER,
    Browser,
    EchoApp,
    Nginx,
    Node,
    Servers,
    call,
    holdfast,
)
from testkit.databases import PostgresCluster
from testkit.mail import Mailbox
from testkit.rows import Factory
from testkit.tools import require_tool
from testkit.values import SECRET
from testkit.web import csrf_from


@dataclass
class Shared:
    """What every node of the deployment shares: the database, Redis, the mail server."""

    settings: dict[str, str]
    app: Flask  # an in-process app on the same database, for arranging and checking
    make: Factory


@dataclass
class Deployment:
    a: Node
    b: Node
    nginx: Nginx
    protected: EchoApp


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, smtp_server: tuple[Mailbox, int]
) -> Iterator[Shared]:
    require_tool(str(GUNICORN), "the nodes run under gunicorn")
    require_tool(NGINX, "the load balancer is nginx")
    require_tool(REDIS_SERVER, "the nodes share rate limits through Redis")
    bin_dir = databases.postgres_bin()
    if bin_dir is None:
        require_tool("/usr/lib/postgresql/15/bin/initdb", "the nodes share PostgreSQL")
    stack = Servers()
    cluster = PostgresCluster(bin_dir).start()  # type: ignore[arg-type]
    application = None
    try:
        cluster.admin('CREATE DATABASE "holdfast"')
        redis = stack.redis()
        _box, smtp_port = smtp_server
        settings = {
            "HOLDFAST_DATABASE_URL": cluster.url("holdfast"),
            "HOLDFAST_SECRET_KEY": SECRET,
            "HOLDFAST_MAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
            "HOLDFAST_BASE_URL": "http://holdfast.test",
            "HOLDFAST_COOKIE_SECURE": "false",
            "HOLDFAST_TRUSTED_PROXIES": "1",
            "HOLDFAST_REDIS_URL": redis.url,
            "HOLDFAST_RATELIMIT_CODES": "1000 per minute",
            "HOLDFAST_RATELIMIT_CODES_PER_IP": "1000 per minute",
            "HOLDFAST_RATELIMIT_CHECKS": "1000 per minute",
            "HOLDFAST_RATELIMIT_CHECKS_PER_IP": "1000 per minute",
        }
        holdfast(settings, "db", "upgrade")
        application = create_app(
            {
                "DATABASE_URL": settings["HOLDFAST_DATABASE_URL"],
                "SECRET_KEY": SECRET,
                "MAIL_URL": "console",
            },
            instance_path=tmp_path_factory.mktemp("multinode"),
        )
        services = application.extensions["holdfast"]
        yield Shared(settings, application, Factory(services, SystemClock()))  # type: ignore[arg-type]
    finally:
        if application is not None:
            application.extensions["holdfast"].close()
        try:
            stack.close()
        finally:
            cluster.stop()


def deploy(servers: Servers, shared: Shared) -> Deployment:
    a = servers.node(shared.settings, label="node-a", workers=2, threads=1)
    b = servers.node(shared.settings, label="node-b", workers=2, threads=1)
    protected = servers.add(EchoApp())
    nginx = servers.nginx(
        {"holdfast": [a.address, b.address], "protected_app": [protected.address]}
    )
    return Deployment(a, b, nginx, protected)


@pytest.fixture(scope="module")
def deployment(shared: Shared) -> Iterator[Deployment]:
    servers = Servers()
    try:
        yield deploy(servers, shared)
    finally:
        servers.close()


def sign_in(base_url: str, mailbox: Mailbox, email: str) -> dict[str, Any]:
    """Code request and verify through the JSON API at ``base_url``; the 201 body."""
    before = mailbox.count(email)
    asked = call(f"{base_url}/api/auth/login", "POST", json_body={"email": email})
    assert asked.status == 202, asked.text
    code = mailbox.last_code(email, before + 1)
    body = {"challengeId": asked.json()["challengeId"], "code": code}
    verified = call(f"{base_url}/api/auth/verify", "POST", json_body=body)
    assert verified.status == 201, verified.text
    return verified.json()  # type: ignore[no-any-return]


def session_row(shared: Shared, session_id: str) -> UserSession | None:
    with shared.make.services.session() as db:
        return db.get(UserSession, session_id)


# --- a session is the cluster's, not a node's -------------------------------------------


def test_session_made_on_a_works_on_b_and_ending_it_on_a_is_refused_on_b(
    shared: Shared, deployment: Deployment, mailbox: Mailbox
):
    tenant = shared.make.tenant("nodes")
    person = shared.make.user("ana@nodes.test", tenant)
    a, b = deployment.a.url, deployment.b.url

    made = sign_in(a, mailbox, person.email)
    token, session_id = made["token"], made["sessionId"]
    status = call(f"{b}/api/auth/session", token=token)
    assert status.status == 200 and status.json()["sessionId"] == session_id
    checked = call(f"{b}/auth/verify", token=token)
    assert checked.status == 200
    assert checked.headers["x-holdfast-session"] == session_id
    assert checked.headers["x-holdfast-user"] == person.id
    # Through nginx: auth_request against the nodes, the identity handed to the app.
    guarded = call(f"{deployment.nginx.url}/app/reports", token=token)
    assert guarded.status == 200, guarded.text
    assert guarded.json()["X-Holdfast-User"] == person.id
    assert guarded.json()["X-Holdfast-Session"] == session_id
    assert guarded.json()["authorization"] is None  # the token stays with Holdfast

    ended = call(f"{a}/api/auth/sessions/{session_id}", "DELETE", token=token)
    assert ended.status == 204
    refused = call(f"{b}/auth/verify", token=token)  # the very next request, other node
    assert refused.status == 401
    assert refused.json()["code"] == "invalid_session"
    assert call(f"{b}/api/auth/session", token=token).status == 401
    # A program is told so in JSON (a browser would be sent to sign in).
    bounced = call(f"{deployment.nginx.url}/app/reports", token=token)
    assert bounced.status == 401
    assert bounced.json()["code"] == "invalid_session"

    row = session_row(shared, session_id)
    assert row is not None and row.end_reason == "logout" and row.ended_at is not None
    with shared.make.services.session() as db:
        kinds = db.scalars(select(Event.kind).where(Event.session_id == session_id)).all()
    assert "session.created" in kinds and "session.ended" in kinds


def test_web_sign_in_spread_over_both_nodes(
    shared: Shared, deployment: Deployment, mailbox: Mailbox
):
    """The pages' sign-in flow through nginx, whose round robin sends its steps to both
    nodes: the flow cookie, CSRF token and code work on whichever node gets the step."""
    tenant = shared.make.tenant("pages")
    person = shared.make.user("bo@pages.test", tenant)
    browser = Browser(deployment.nginx.url)
    steps_before = [_flow_lines(node) for node in (deployment.a, deployment.b)]

    page = browser.get("/login")
    asked = browser.post("/login", {"email": person.email, "csrf_token": csrf_from(page.text)})
    assert asked.status == 302 and asked.headers["location"].endswith("/login/code")
    page = browser.get("/login/code")
    code = mailbox.last_code(person.email)
    signed = browser.post("/login/code", {"code": code, "csrf_token": csrf_from(page.text)})
    assert signed.status == 302 and signed.headers["location"].endswith("/devices"), signed.text
    assert "holdfast_session" in browser.cookies
    for _ in range(2):  # one page view on each node
        devices = browser.get("/devices")
        assert devices.status == 200
        assert "This device" in devices.text or person.email in devices.text

    steps_after = [_flow_lines(node) for node in (deployment.a, deployment.b)]
    assert all(after > before for before, after in zip(steps_before, steps_after, strict=True))


def _flow_lines(node: Node) -> int:
    """How many sign-in or device page requests the node has logged."""
    return len(re.findall(r'"path": "/(login|login/code|devices)"', node.log.read_text()))


# --- the session limit with sign-ins spread over both nodes ---------------------------------


def open_challenges(shared: Shared, user: User, count: int) -> list[tuple[str, str]]:
    """``count`` open codes for one person at once (as if asked for from ``count``
    devices; asking through the API would replace each earlier code): (challengeId, code)."""
    services = shared.make.services
    now = SystemClock().now()
    made = []
    with services.session(write=True) as db:
        for _ in range(count):
            code = f"{secrets.randbelow(10**6):06d}"
            challenge = Challenge(
                id=f"chl_{secrets.token_urlsafe(16)}",
                email=user.email,
                user_id=user.id,
                tenant_id=user.tenant_id,
                created_at=now,
                expires_at=now + timedelta(minutes=10),
                ip="127.0.0.1",
                attempts=0,
            )
            challenge.code_hash = services.hasher.hash(challenge.id, code)
            db.add(challenge)
            made.append((challenge.id, code))
        db.commit()
    return made


def parallel_sign_ins(deployment: Deployment, codes: list[tuple[str, str]]) -> list[Any]:
    """Every code submitted at the same moment, alternating node A and node B."""
    start = threading.Barrier(len(codes))
    results: list[Any] = [None] * len(codes)

    def submit(number: int, challenge_id: str, code: str) -> None:
        node = deployment.a if number % 2 == 0 else deployment.b
        start.wait(timeout=10)
        results[number] = call(
            f"{node.url}/api/auth/verify",
            "POST",
            json_body={"challengeId": challenge_id, "code": code, "deviceId": f"device-{number}"},
            timeout=30,
        )

    threads = [
        threading.Thread(target=submit, args=(number, *pair)) for number, pair in enumerate(codes)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=40)
    assert all(result is not None for result in results), "a sign-in did not finish"
    return results


def live_rows(shared: Shared, user: User) -> list[UserSession]:
    with shared.make.services.session() as db:
        return list(
            db.scalars(
                select(UserSession).where(
                    UserSession.user_id == user.id, UserSession.ended_at.is_(None)
                )
            )
        )


def test_session_limit_deny_holds_with_parallel_sign_ins_on_both_nodes(
    shared: Shared, deployment: Deployment
):
    tenant = shared.make.tenant("deny", max_sessions_per_user=3, limit_mode="deny")
    person = shared.make.user("cy@deny.test", tenant)

    results = parallel_sign_ins(deployment, open_challenges(shared, person, 10))

    statuses = Counter(result.status for result in results)
    assert statuses == {201: 3, 409: 7}, [r.text for r in results]
    refused = next(r for r in results if r.status == 409).json()
    assert refused["code"] == "session_limit_reached" and len(refused["sessions"]) == 3
    started = {r.json()["sessionId"] for r in results if r.status == 201}
    assert {row.id for row in live_rows(shared, person)} == started
    with shared.make.services.session() as db:
        created = db.scalar(
            select(func.count())
            .select_from(Event)
            .where(Event.kind == "session.created", Event.subject_id == person.id)
        )
    assert created == 3


def test_session_limit_evict_holds_with_parallel_sign_ins_on_both_nodes(
    shared: Shared, deployment: Deployment
):
    tenant = shared.make.tenant("evict", max_sessions_per_user=3, limit_mode="evict_oldest")
    person = shared.make.user("di@evict.test", tenant)

    results = parallel_sign_ins(deployment, open_challenges(shared, person, 10))

    assert [r.status for r in results] == [201] * 10, [r.text for r in results]
    live = live_rows(shared, person)
    assert len(live) == 3
    with shared.make.services.session() as db:
        evicted = db.scalar(
            select(func.count())
            .select_from(UserSession)
            .where(UserSession.user_id == person.id, UserSession.end_reason == "limit_evicted")
        )
    assert evicted == 7
    # The three left are the three newest, and their tokens work on either node.
    newest = {r.json()["sessionId"]: r.json()["token"] for r in results}
    for row in live:
        for node in (deployment.a, deployment.b):
            assert call(f"{node.url}/auth/verify", token=newest[row.id]).status == 200


# --- a node dies mid-traffic ----------------------------------------------------------------

WORKERS = 6
ROUNDS = 6
CHECKS_PER_ROUND = 4
KILL_AFTER_SIGN_INS = 10


def test_killing_a_node_mid_traffic_loses_nothing(shared: Shared, mailbox: Mailbox, tmp_path: Path):
    """Clients sign in and use their sessions through nginx; node A is SIGKILLed half-way.
    Only requests A held at that moment may fail (502); node B serves everything after;
    every sign-in answered 201 has its complete row, and no row exists without its
    audit event (a transaction cut off by the kill left nothing behind)."""
    tenant = shared.make.tenant("killed", max_sessions_per_user=0)
    people = [shared.make.user(f"p{n}@killed.test", tenant) for n in range(WORKERS)]
    servers = Servers()
    try:
        deployment = deploy(servers, shared)
        lb = deployment.nginx.url
        rows_before = _session_count(shared, tenant.id)
        log: list[tuple[float, str, int, str | None]] = []  # (start, what, status, session)
        lock = threading.Lock()
        signed_in = threading.Semaphore(0)
        tokens: dict[str, str] = {}
        deadline = time.monotonic() + 45

        def record(started: float, what: str, status: int, session_id: str | None = None) -> None:
            with lock:
                log.append((started, what, status, session_id))

        killed = threading.Event()
        killed_at = 0.0

        def client(person: User) -> None:
            # ROUNDS rounds, and at least two begun a second after the kill however fast
            # the first ones went, so that node B's serving alone is always measured.
            rounds = after_kill = 0
            while rounds < ROUNDS or after_kill < 2:
                if time.monotonic() > deadline:
                    return
                rounds += 1
                started = time.monotonic()
                if killed.is_set() and started > killed_at + 1.0:
                    after_kill += 1
                try:
                    before = mailbox.count(person.email)
                    asked = call(f"{lb}/api/auth/login", "POST", json_body={"email": person.email})
                    record(started, "code", asked.status)
                    if asked.status != 202:
                        continue
                    code = mailbox.last_code(person.email, before + 1)
                    started = time.monotonic()
                    made = call(
                        f"{lb}/api/auth/verify",
                        "POST",
                        json_body={"challengeId": asked.json()["challengeId"], "code": code},
                    )
                except (OSError, AssertionError):  # a dropped connection, or no code mailed
                    record(started, "error", 0)
                    continue
                if made.status != 201:
                    record(started, "sign-in", made.status)
                    continue
                session_id, token = made.json()["sessionId"], made.json()["token"]
                record(started, "sign-in", 201, session_id)
                with lock:
                    tokens[session_id] = token
                signed_in.release()
                for _ in range(CHECKS_PER_ROUND):
                    started = time.monotonic()
                    try:
                        checked = call(f"{lb}/auth/verify", token=token)
                    except OSError:
                        record(started, "error", 0, session_id)
                        continue
                    record(started, "check", checked.status, session_id)

        threads = [threading.Thread(target=client, args=(person,)) for person in people]
        for thread in threads:
            thread.start()
        for _ in range(KILL_AFTER_SIGN_INS):
            assert signed_in.acquire(timeout=30), servers.logs()
        deployment.a.kill()
        killed_at = time.monotonic()
        killed.set()
        for thread in threads:
            thread.join(timeout=max(1.0, deadline - time.monotonic()))
        assert not any(thread.is_alive() for thread in threads), "traffic did not finish"

        timeline = sorted(
            (round(start - killed_at, 3), what, status) for start, what, status, _ in log
        )
        failures = [entry for entry in timeline if entry[2] not in (200, 201, 202)]
        # Only what node A held when it died may fail: at most one request per client.
        assert len(failures) <= WORKERS, failures
        assert all(status in (0, 502) for _start, _what, status in failures), failures
        later = [entry for entry in timeline if entry[0] > 1.0]
        assert len(later) >= WORKERS * CHECKS_PER_ROUND, timeline  # B went on serving ...
        assert all(status in (200, 201, 202) for _s, _w, status in later), failures  # ... all

        answered = {sid for _s, what, status, sid in log if what == "sign-in" and status == 201}
        attempted = sum(1 for _s, what, _status, _sid in log if what in ("sign-in", "error"))
        with shared.make.services.session() as db:
            rows = {
                row.id: row
                for row in db.scalars(select(UserSession).where(UserSession.tenant_id == tenant.id))
            }
            audited = set(
                db.scalars(select(Event.session_id).where(Event.kind == "session.created"))
            )
            devices = set(db.scalars(select(Device.id).where(Device.tenant_id == tenant.id)))
        assert answered <= rows.keys(), answered - rows.keys()  # no 201 sign-in was lost
        assert len(rows) - rows_before <= attempted
        for row in rows.values():  # nothing half-written
            assert row.id in audited and row.device_id in devices, row.id
            assert row.idle_deadline > row.created_at and row.absolute_deadline > row.created_at
        # Sessions made through A before it died keep working through B.
        for session_id, token in tokens.items():
            assert call(f"{lb}/auth/verify", token=token).status == 200, session_id
    finally:
        servers.close()


def _session_count(shared: Shared, tenant_id: str) -> int:
    with shared.make.services.session() as db:
        return (
            db.scalar(
                select(func.count())
                .select_from(UserSession)
                .where(UserSession.tenant_id == tenant_id)
            )
            or 0
        )
