"""Webhooks: endpoints an admin registers, deliveries queued with their events, signed,
received by a real HTTP server, retried with backoff, and never blocked by a failing one."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app import webhook_transport
from app.clock import FrozenClock
from app.core import events, webhooks
from app.models import Event, User, WebhookDelivery, WebhookEndpoint
from app.services import Services
from app.worker import deliver_due
from testkit.mail import Mailbox
from testkit.rows import Factory
from testkit.values import SECRET
from testkit.web import csrf_from, login

# --- a receiver on 127.0.0.1 --------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server; each path answers the status set for it (default 204)."""

    base: str = ""
    statuses: dict[str, int] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with state.lock:
                state.received.append(Received(self.path, dict(self.headers.items()), body))
                status = state.statuses.get(self.path, 204)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def allowed(app: Flask) -> Flask:
    """Let webhooks reach 127.0.0.1 (HOLDFAST_WEBHOOK_ALLOW_PRIVATE)."""
    app.config["WEBHOOK_ALLOW_PRIVATE"] = True
    return app


def policy_changed(services: Services, tenant_id: str) -> None:
    """A policy.changed event of the tenant, committed: what the endpoints subscribe to."""
    with services.session(write=True) as db:
        now = services.clock.now()
        events.record(db, "policy.changed", now=now, tenant_id=tenant_id, changes={})
        db.commit()


def register(client: FlaskClient, url: str, *kinds: str) -> Any:
    page = client.get("/admin/webhooks")
    assert page.status_code == 200
    return client.post(
        "/admin/webhooks",
        data={"csrf_token": csrf_from(page.text), "url": url, "kinds": list(kinds)},
    )


def secret_in(html: str) -> str:
    start = html.index('id="webhook-secret"')
    return html[html.index(">", start) + 1 : html.index("</code>", start)]


def work(services: Services, app: Flask) -> int:
    return deliver_due(services, private_ok=bool(app.config.get("WEBHOOK_ALLOW_PRIVATE")))


def deliveries(services: Services, **where: Any) -> list[WebhookDelivery]:
    with services.session() as db:
        query = select(WebhookDelivery).order_by(WebhookDelivery.created_at, WebhookDelivery.id)
        for name, value in where.items():
            query = query.where(getattr(WebhookDelivery, name) == value)
        return list(db.scalars(query))


# --- receiving ----------------------------------------------------------------------------


def test_a_sign_in_is_delivered_signed_to_a_local_server(
    allowed: Flask,
    services: Services,
    clock: FrozenClock,
    admin_client: FlaskClient,
    admin: User,
    member: User,
    mailbox: Mailbox,
    receiver: Receiver,
) -> None:
    made = register(admin_client, receiver.url("/hooks"), "session.created", "session.ended")
    assert made.status_code == 200, made.text
    secret = secret_in(made.text)
    assert secret.startswith("whsec_")
    with services.session() as db:
        endpoint = db.scalars(select(WebhookEndpoint)).one()
        assert endpoint.kinds == ["session.created", "session.ended"]
        assert secret.encode() not in endpoint.secret_encrypted
        created = db.scalars(select(Event).where(Event.kind == "webhook.created")).one()
        assert created.actor_id == admin.id and created.details["endpoint_id"] == endpoint.id
    assert secret not in admin_client.get("/admin/webhooks").text  # shown once only

    member_client = allowed.test_client()
    assert login(member_client, mailbox, member.email).status_code == 302
    queued = deliveries(services)
    assert [d.kind for d in queued] == ["session.created"] and queued[0].status == "pending"
    with services.session() as db:
        event = db.get_one(Event, queued[0].event_id)
        assert event.kind == "session.created" and event.subject_id == member.id
    assert receiver.received == []  # nothing is sent from inside the request

    result = allowed.test_cli_runner().invoke(args=["worker", "--once"])
    assert result.exit_code == 0 and "and 1 webhook deliveries" in result.output
    [got] = receiver.at("/hooks")
    timestamp, mac = (
        part.split("=", 1)[1] for part in got.headers["Holdfast-Signature"].split(",")
    )
    assert int(timestamp) == int(clock.now().timestamp())
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + got.body, hashlib.sha256)
    assert hmac.compare_digest(mac, expected.hexdigest())
    assert webhooks.verify_signature(
        secret, got.headers["Holdfast-Signature"], got.body, now=clock.now()
    )
    assert not webhooks.verify_signature(
        secret, got.headers["Holdfast-Signature"], got.body + b" ", now=clock.now()
    )
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["Holdfast-Event"] == "session.created"
    assert got.headers["Holdfast-Delivery"] == queued[0].id
    body = json.loads(got.body)
    assert body["type"] == "session.created" and body["tenantId"] == member.tenant_id
    assert body["id"] == f"evt_{event.hash[:32]}"
    assert body["data"]["subjectId"] == member.id
    assert body["data"]["sessionId"] == event.session_id and body["data"]["deviceId"]
    [done] = deliveries(services)
    assert done.status == "delivered" and done.attempts == 1 and done.response_status == 204
    page = admin_client.get("/admin/webhooks")
    assert f'id="delivery-{done.id}"' in page.text and "delivered" in page.text


def test_only_subscribed_kinds_of_the_own_tenant_are_queued(
    allowed: Flask,
    services: Services,
    make: Factory,
    admin_client: FlaskClient,
    admin: User,
    receiver: Receiver,
) -> None:
    assert register(admin_client, receiver.url("/trust"), "device.trusted").status_code == 200
    assert register(admin_client, receiver.url("/policy"), "policy.changed").status_code == 200
    globex = make.tenant("globex")
    with services.session(write=True) as db:
        now = services.clock.now()
        events.record(db, "session.created", now=now, tenant_id=globex.id)
        events.record(db, "policy.changed", now=now, tenant_id=globex.id, changes={})
        events.record(db, "session.created", now=now, tenant_id=admin.tenant_id)
        events.record(db, "policy.changed", now=now, tenant_id=admin.tenant_id, changes={})
        db.commit()
    queued = deliveries(services)
    assert [(d.kind, d.tenant_id) for d in queued] == [("policy.changed", admin.tenant_id)]
    # A rolled-back event queues nothing.
    with services.session(write=True) as db:
        events.record(db, "policy.changed", now=services.clock.now(), tenant_id=admin.tenant_id)
        db.flush()
        db.rollback()
    assert len(deliveries(services)) == 1


# --- retries ------------------------------------------------------------------------------


def test_failures_are_retried_with_exponential_backoff(
    allowed: Flask,
    services: Services,
    clock: FrozenClock,
    admin_client: FlaskClient,
    admin: User,
    receiver: Receiver,
) -> None:
    receiver.statuses["/flaky"] = 503
    assert register(admin_client, receiver.url("/flaky"), "policy.changed").status_code == 200
    policy_changed(services, admin.tenant_id)
    waits = []
    for attempt in range(1, 5):
        assert work(services, allowed) == 1
        assert len(receiver.at("/flaky")) == attempt
        [delivery] = deliveries(services)
        assert delivery.status == "pending" and delivery.attempts == attempt
        assert delivery.response_status == 503 and delivery.last_error == "HTTP 503"
        wait = delivery.next_attempt_at - clock.now()
        waits.append(wait)
        # Not due a moment before the backoff ends, due right at it.
        clock.advance(seconds=wait.total_seconds() - 1)
        assert work(services, allowed) == 0
        clock.advance(seconds=1)
    assert waits == [timedelta(minutes=m) for m in (1, 2, 4, 8)]
    assert len(receiver.at("/flaky")) == 4
    receiver.statuses["/flaky"] = 200
    assert work(services, allowed) == 1
    [delivery] = deliveries(services)
    assert delivery.status == "delivered" and delivery.attempts == 5
    bodies = {r.body for r in receiver.at("/flaky")}
    assert len(bodies) == 1  # every attempt sends the same event


def test_a_delivery_that_keeps_failing_gives_up_and_can_be_retried(
    allowed: Flask,
    services: Services,
    clock: FrozenClock,
    admin_client: FlaskClient,
    admin: User,
    receiver: Receiver,
    mailbox: Mailbox,
) -> None:
    receiver.statuses["/down"] = 500
    assert register(admin_client, receiver.url("/down"), "policy.changed").status_code == 200
    policy_changed(services, admin.tenant_id)
    for _ in range(webhooks.MAX_ATTEMPTS):
        assert work(services, allowed) == 1
        clock.advance(hours=6)
    assert work(services, allowed) == 0
    [delivery] = deliveries(services)
    assert delivery.status == "failed" and delivery.attempts == webhooks.MAX_ATTEMPTS
    assert len(receiver.at("/down")) == webhooks.MAX_ATTEMPTS
    # The admin sees it and sends it again once the receiver is fixed.
    receiver.statuses["/down"] = 200
    assert login(admin_client, mailbox, admin.email).status_code == 302  # a fresh sign-in
    page = admin_client.get("/admin/webhooks")
    assert "failed" in page.text and "HTTP 500" in page.text
    retried = admin_client.post(
        f"/admin/webhooks/deliveries/{delivery.id}/retry",
        data={"csrf_token": csrf_from(page.text)},
    )
    assert retried.status_code == 302
    assert work(services, allowed) == 1
    [delivery] = deliveries(services)
    assert delivery.status == "delivered"
    with services.session() as db:
        assert db.scalars(select(Event).where(Event.kind == "webhook.retried")).one()


def test_a_failing_endpoint_does_not_block_the_others(
    allowed: Flask,
    services: Services,
    clock: FrozenClock,
    admin_client: FlaskClient,
    admin: User,
    receiver: Receiver,
) -> None:
    receiver.statuses["/broken"] = 500
    assert register(admin_client, receiver.url("/broken"), "policy.changed").status_code == 200
    # Nothing listens on this port: the connection is refused.
    dead = receiver.base.rsplit(":", 1)[0] + ":9"
    assert register(admin_client, dead + "/gone", "policy.changed").status_code == 200
    assert register(admin_client, receiver.url("/fine"), "policy.changed").status_code == 200
    for number in range(3):
        with services.session(write=True) as db:
            events.record(
                db,
                "policy.changed",
                now=clock.now(),
                tenant_id=admin.tenant_id,
                changes={"n": number},
            )
            db.commit()
        work(services, allowed)
        clock.advance(seconds=20)
    fine = receiver.at("/fine")
    assert [json.loads(r.body)["data"]["changes"]["n"] for r in fine] == [0, 1, 2]
    states = {(d.endpoint_id, d.status) for d in deliveries(services)}
    assert len(states) == 3  # each endpoint's deliveries share a state
    assert {s for _e, s in states} == {"pending", "delivered"}
    gone = [d for d in deliveries(services) if d.last_error and "HTTP" not in d.last_error]
    assert len(gone) == 3 and all(d.response_status is None for d in gone)


# --- registration rules -------------------------------------------------------------------


def test_private_and_local_addresses_are_refused_unless_allowed(
    app: Flask, services: Services, admin_client: FlaskClient, receiver: Receiver
) -> None:
    unreachable = "That address is not allowed or not reachable."
    for url, message in (
        (receiver.url("/hooks"), "must start with https://"),
        ("https://127.0.0.1/hooks", unreachable),
        ("https://localhost:8443/hooks", unreachable),
        ("https://10.1.2.3/hooks", unreachable),
        ("https://169.254.169.254/latest/meta-data", unreachable),
        ("https://[::1]/hooks", unreachable),
        ("https://user:pw@example.com/hooks", "Leave user names and passwords out"),
        ("ftp://example.com/hooks", "must start with https://"),
        ("https://", "needs a host name"),
        ("https://example.invalid/hooks", unreachable),
    ):
        answer = register(admin_client, url, "session.created")
        assert answer.status_code == 422, url
        shown = re.search(r'id="webhook-error">([^<]*)<', answer.text)
        assert shown is not None and message in shown.group(1), (url, answer.text)
        if message == unreachable:  # never which address, nor whether private or unknown
            assert shown.group(1) == webhooks.UNREACHABLE
    unknown = register(admin_client, "https://example.com/hooks", "user.created")
    assert unknown.status_code == 422 and "Unknown event kind: user.created" in unknown.text
    no_kinds = register(admin_client, "https://example.com/hooks")
    assert no_kinds.status_code == 422 and "at least one kind" in no_kinds.text
    with services.session() as db:
        assert db.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0


def test_a_url_that_turned_private_is_refused_at_delivery(
    allowed: Flask,
    services: Services,
    clock: FrozenClock,
    admin_client: FlaskClient,
    admin: User,
    receiver: Receiver,
) -> None:
    assert register(admin_client, receiver.url("/hooks"), "policy.changed").status_code == 200
    allowed.config["WEBHOOK_ALLOW_PRIVATE"] = False
    policy_changed(services, admin.tenant_id)
    assert work(services, allowed) == 1
    assert receiver.received == []
    [delivery] = deliveries(services)
    assert delivery.status == "pending"
    assert delivery.last_error == "refused: the address is not allowed or not reachable"


def test_public_addresses_pass_with_any_resolver() -> None:
    def resolve(host: str, port: int, **_kw: Any) -> list[Any]:
        answers = {"hooks.example.com": "93.184.215.14", "sneaky.example.com": "10.0.0.8"}
        return [(2, 1, 6, "", (answers[host], port))]

    url, host, port = webhooks.check_url(
        " https://hooks.example.com/in?x=1 ", allow_private=False, resolve=resolve
    )
    assert (url, host, port) == ("https://hooks.example.com/in?x=1", "hooks.example.com", 443)
    with pytest.raises(webhooks.ValidationError) as refused:
        webhooks.check_url("https://sneaky.example.com/", allow_private=False, resolve=resolve)
    assert refused.value.message == webhooks.UNREACHABLE and "10.0.0.8" not in str(refused.value)
    for address, public in (
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("0.0.0.0", False),  # noqa: S104 (an address to refuse, not to bind)
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),
        ("169.254.169.254", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("64:ff9b::a00:1", False),
        ("2002:0a00:0001::1", False),
        ("::127.0.0.1", False),  # IPv4-compatible
        ("::ffff:0:7f00:1", False),  # IPv4-translated
        ("64:ff9b:1::a9fe:a9fe", False),  # local-use NAT64
    ):
        assert webhook_transport.is_public(address) is public, address


def test_deleting_an_endpoint_drops_its_queue(
    allowed: Flask,
    services: Services,
    clock: FrozenClock,
    admin_client: FlaskClient,
    admin: User,
    receiver: Receiver,
) -> None:
    assert register(admin_client, receiver.url("/hooks"), "policy.changed").status_code == 200
    policy_changed(services, admin.tenant_id)
    with services.session() as db:
        endpoint_id = db.scalars(select(WebhookEndpoint.id)).one()
    page = admin_client.get("/admin/webhooks")
    answer = admin_client.post(
        f"/admin/webhooks/{endpoint_id}/delete", data={"csrf_token": csrf_from(page.text)}
    )
    assert answer.status_code == 302
    assert deliveries(services) == []
    assert work(services, allowed) == 0 and receiver.received == []
    with services.session() as db:
        assert db.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0
        gone = db.scalars(select(Event).where(Event.kind == "webhook.deleted")).one()
        assert gone.details["deliveries_dropped"] == 1
    other = admin_client.post(
        "/admin/webhooks/whk_nope/delete", data={"csrf_token": csrf_from(page.text)}
    )
    assert other.status_code == 404


def test_members_cannot_manage_webhooks(
    app: Flask, member: User, mailbox: Mailbox, receiver: Receiver
) -> None:
    client = app.test_client()
    assert login(client, mailbox, member.email).status_code == 302
    assert client.get("/admin/webhooks").status_code == 403
    page = client.get("/devices")
    answer = client.post(
        "/admin/webhooks",
        data={
            "csrf_token": csrf_from(page.text),
            "url": "https://example.com",
            "kinds": "session.created",
        },
    )
    assert answer.status_code == 403


def test_an_erasure_tells_integrations_which_sessions_ended(
    allowed: Flask,
    services: Services,
    admin_client: FlaskClient,
    member: User,
    mailbox: Mailbox,
    receiver: Receiver,
) -> None:
    """The session.ended deliveries of an erasure carry the real ids (a receiver cannot
    act on a pseudonym); the person's finished deliveries are deleted."""
    assert (
        register(
            admin_client, receiver.url("/hooks"), "session.created", "session.ended"
        ).status_code
        == 200
    )
    member_client = allowed.test_client()
    assert login(member_client, mailbox, member.email).status_code == 302
    assert work(services, allowed) == 1  # session.created, delivered
    page = admin_client.get(f"/admin/users/{member.id}/erase")
    done = admin_client.post(
        f"/admin/users/{member.id}/erase",
        data={"csrf_token": csrf_from(page.text), "confirm": member.email},
    )
    assert done.status_code == 200
    [pending] = deliveries(services)
    assert pending.kind == "session.ended" and pending.status == "pending"
    assert work(services, allowed) == 1
    last = json.loads(receiver.at("/hooks")[-1].body)
    assert last["data"]["subjectId"] == member.id and last["data"]["reason"] == "user_erased"


def test_the_worker_command_delivers_until_stopped(
    allowed: Flask,
    services: Services,
    clock: FrozenClock,
    database_url: str,
    admin_client: FlaskClient,
    admin: User,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    """`holdfast worker` as its own process: it sends what is queued, keeps polling, and
    stops cleanly on SIGTERM."""
    assert register(admin_client, receiver.url("/hooks"), "policy.changed").status_code == 200
    policy_changed(services, admin.tenant_id)
    command = Path(sys.executable).with_name("holdfast")
    env = {
        **os.environ,
        "HOLDFAST_DATABASE_URL": database_url,
        "HOLDFAST_SECRET_KEY": SECRET,
        "HOLDFAST_MAIL_URL": "console",
        "HOLDFAST_WEBHOOK_ALLOW_PRIVATE": "true",
        "HOLDFAST_LOG_FORMAT": "text",
    }
    worker = subprocess.Popen(
        [str(command), "worker", "--interval", "0.2"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not receiver.at("/hooks") and time.monotonic() < deadline:
            assert worker.poll() is None, worker.stdout.read().decode()  # type: ignore[union-attr]
            time.sleep(0.05)
        assert len(receiver.at("/hooks")) == 1
        # A second event while it runs: picked up on a later poll.
        with services.session(write=True) as db:
            events.record(
                db, "policy.changed", now=clock.now(), tenant_id=admin.tenant_id, changes={"n": 2}
            )
            db.commit()
        while len(receiver.at("/hooks")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(receiver.at("/hooks")) == 2
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=30)[0].decode()
    assert worker.returncode == 0, output
    assert {d.status for d in deliveries(services)} == {"delivered"}


def test_a_slow_dns_lookup_times_out_and_holds_up_no_other_lookup() -> None:
    """getaddrinfo has no timeout: a resolver that never answers used to hold the
    request (and its worker) for as long as the system retried. Each lookup now runs in
    a thread of its own with a short timeout; a hanging one answers "not reachable" in
    time, and another lookup at the same moment is not queued behind it."""
    assert webhook_transport.DNS_TIMEOUT <= 2.0
    release = threading.Event()
    started = threading.Event()

    def hanging(host: str, port: int, **_kw: Any) -> list[Any]:
        started.set()
        release.wait(30)
        return [(2, 1, 6, "", ("93.184.215.14", port))]

    def quick(host: str, port: int, **_kw: Any) -> list[Any]:
        return [(2, 1, 6, "", ("93.184.215.14", port))]

    outcome: dict[str, Any] = {}

    def register_slow() -> None:
        began = time.monotonic()
        try:
            webhooks.check_url(
                "https://slow.example.com/", allow_private=False, resolve=hanging, timeout=0.5
            )
        except webhooks.ValidationError as error:
            outcome["error"] = error.message
        outcome["seconds"] = time.monotonic() - began

    slow = threading.Thread(target=register_slow)
    slow.start()
    try:
        assert started.wait(5)
        began = time.monotonic()
        assert webhooks.check_url(
            "https://fast.example.com/", allow_private=False, resolve=quick
        ) == ("https://fast.example.com/", "fast.example.com", 443)
        assert time.monotonic() - began < 0.4  # not behind the hanging lookup
        slow.join(5)
        assert outcome["error"] == webhooks.UNREACHABLE
        assert 0.5 <= outcome["seconds"] < 2
    finally:
        release.set()
