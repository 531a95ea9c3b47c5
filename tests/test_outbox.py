"""Mail through the durable outbox (app.outbox): no request waits on the relay, and when
the relay hangs, refuses or a sender dies, every message still arrives, once."""

from __future__ import annotations

import signal
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from werkzeug.serving import make_server

from app.clock import SystemClock
from app.models import OutboxMessage
from testkit.cluster import HOLDFAST, call, free_port, node_env
from testkit.core import ask
from testkit.mail import Mailbox, sending
from testkit.rows import Factory
from testkit.values import SECRET

CODES = 8


class HungRelay:
    """A relay that accepts connections and never says a word (nor closes them)."""

    def __init__(self, port: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self.listener.settimeout(0.2)
        self.held: list[socket.socket] = []
        self.accepted = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            self.held.append(connection)
            self.accepted.set()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        for connection in self.held:
            connection.close()
        self.listener.close()


@contextmanager
def real_relay(port: int) -> Iterator[Mailbox]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def served(app_config, tmp_path) -> Iterator[Any]:
    """Start the app on the real clock, its mail going to 127.0.0.1:``port``, served by a
    threaded server: ``served(port, **settings)`` -> (base url, services)."""
    from app import create_app

    stack = []

    def start(port: int, **settings: Any) -> tuple[str, Any]:
        application = create_app(
            {
                **app_config,
                "CLOCK": None,
                "MAIL_URL": f"smtp://127.0.0.1:{port}",
                "MAIL_TIMEOUT": 1,
                **settings,
            },
            instance_path=tmp_path / f"app{len(stack)}",
        )
        server = make_server("127.0.0.1", 0, application, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        sent = sending(application)
        sent.__enter__()
        stack.append((server, thread, sent))
        return f"http://127.0.0.1:{server.server_port}", application.extensions["holdfast"]

    yield start
    for server, thread, sent in stack:
        server.shutdown()
        thread.join(timeout=5)
        sent.__exit__(None, None, None)


def sign_in_api(base: str, box: Mailbox, email: str) -> str:
    asked = call(f"{base}/api/auth/login", "POST", json_body={"email": email})
    assert asked.status == 202, asked.text
    made = call(
        f"{base}/api/auth/verify",
        "POST",
        json_body={"challengeId": asked.json()["challengeId"], "code": box.last_code(email)},
    )
    assert made.status == 201, made.text
    return made.json()["token"]


def people(services: Any, count: int) -> list[str]:
    factory = Factory(services, SystemClock())  # type: ignore[arg-type]
    tenant = factory.tenant("relay")
    emails = [f"p{number}@relay.test" for number in range(count)]
    for email in emails:
        factory.user(email, tenant)
    factory.user("watcher@relay.test", tenant)
    return emails


def ask_all_at_once(base: str, emails: list[str]) -> list[tuple[int, float]]:
    def ask(email: str) -> tuple[int, float]:
        started = time.monotonic()
        answer = call(f"{base}/api/auth/login", "POST", json_body={"email": email})
        return answer.status, time.monotonic() - started

    with ThreadPoolExecutor(max_workers=len(emails)) as pool:
        return list(pool.map(ask, emails))


def verify_timings(base: str, token: str, stop: threading.Event) -> list[float]:
    """/auth/verify of a session unrelated to the mail, asked again and again."""
    took = []
    while not stop.is_set():
        started = time.monotonic()
        assert call(f"{base}/auth/verify", token=token).status == 200
        took.append(time.monotonic() - started)
        time.sleep(0.02)
    return took


def codes_arrive_once(box: Mailbox, emails: list[str], timeout: float = 40) -> None:
    for email in emails:
        box.wait_for(email, 1, timeout=timeout)
    time.sleep(1.5)  # and no second copy follows
    assert {email: len(box.to(email)) for email in emails} == dict.fromkeys(emails, 1)


@pytest.mark.parametrize("trouble", ["hangs", "refuses"])
def test_a_relay_in_trouble_holds_up_no_request_and_loses_no_code(served, trouble):
    port = free_port()
    with real_relay(port) as box:
        base, services = served(port)
        emails = people(services, CODES)
        token = sign_in_api(base, box, "watcher@relay.test")

    relay = HungRelay(port) if trouble == "hangs" else None
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        watching = pool.submit(verify_timings, base, token, stop)
        answers = ask_all_at_once(base, emails)
        time.sleep(2.5)  # the sender tries (and waits out the relay) meanwhile
        stop.set()
        verify_took = watching.result()
    if relay is not None:
        assert relay.accepted.is_set()  # the sender did reach it, and was kept waiting
        relay.stop()

    assert [status for status, _ in answers] == [202] * CODES
    assert max(took for _, took in answers) < 2.0, answers
    assert max(verify_took) < 0.5, max(verify_took)
    with services.session() as db:
        waiting = db.scalars(select(OutboxMessage).where(OutboxMessage.status == "pending"))
        assert len([row for row in waiting if row.last_error]) == CODES  # tried, kept

    # The relay comes back on the same port: every code arrives, once, no restart.
    with real_relay(port) as box:
        codes_arrive_once(box, emails)
        with services.session() as db:
            statuses = db.scalars(
                select(OutboxMessage.status).where(OutboxMessage.kind == "sign_in_code")
            ).all()
            assert set(statuses) == {"sent"}


def test_a_worker_killed_mid_delivery_leaves_the_message_to_another(served, database_url, tmp_path):
    port = free_port()
    relay = HungRelay(port)
    settings = {
        "HOLDFAST_DATABASE_URL": database_url,
        "HOLDFAST_SECRET_KEY": SECRET,
        "HOLDFAST_MAIL_URL": f"smtp://127.0.0.1:{port}",
        "HOLDFAST_MAIL_TIMEOUT": "1",
        "HOLDFAST_LOG_FORMAT": "text",
    }

    def worker() -> subprocess.Popen[bytes]:
        with (tmp_path / "worker.log").open("ab") as log:
            return subprocess.Popen(
                [str(HOLDFAST), "worker", "--interval", "0.2"],
                env=node_env(settings),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    # The web app leaves mail to a worker while one reports (HOLDFAST_MAIL_SENDER=auto).
    base, services = served(port)
    [email] = people(services, 1)
    first = worker()
    try:
        deadline = time.monotonic() + 20
        while not worker_reported(services) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert worker_reported(services)
        # ... and the web process has seen it: it no longer claims what it queues.
        while services.outbox.claim_for is not None and time.monotonic() < deadline:
            services.sender.wake()
            time.sleep(0.1)
        assert services.outbox.claim_for is None
        assert call(f"{base}/api/auth/login", "POST", json_body={"email": email}).status == 202
        assert relay.accepted.wait(10), "the worker never reached the relay"
        first.send_signal(signal.SIGKILL)  # in the middle of the delivery
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    relay.stop()
    with services.session() as db:
        [row] = db.scalars(select(OutboxMessage)).all()
        assert (row.status, row.attempts) == ("pending", 0)  # claimed, never settled

    with real_relay(port) as box:
        second = worker()
        try:
            # After the dead worker's claim runs out, the message goes, once.
            box.wait_for(email, 1, timeout=45)
            time.sleep(1)
            assert len(box.to(email)) == 1
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=15)
    with services.session() as db:
        [row] = db.scalars(select(OutboxMessage)).all()
        assert (row.status, row.attempts, row.body_sealed) == ("sent", 1, None)
    assert "started" in (tmp_path / "worker.log").read_text()


def worker_reported(services: Any) -> bool:
    from app.outbox import worker_running

    with services.session() as db:
        return worker_running(db)


def test_known_and_unknown_addresses_answer_alike(served):
    """Over a real SMTP relay, a known address (a code mailed) and an unknown one (no
    mail) take the same time to answer: mail leaves after the answer, so the answer
    time tells nobody which addresses have accounts."""
    port = free_port()
    with real_relay(port):
        base, services = served(port, RATELIMIT_CODES="10000 per hour")
        [known] = people(services, 1)
        for _ in range(5):  # warm up both paths
            call(f"{base}/api/auth/login", "POST", json_body={"email": known})
            call(f"{base}/api/auth/login", "POST", json_body={"email": "nobody@relay.test"})
        timings: dict[str, list[float]] = {"known": [], "unknown": []}
        for _ in range(60):
            for kind, email in (("known", known), ("unknown", "nobody@relay.test")):
                started = time.perf_counter()
                answer = call(f"{base}/api/auth/login", "POST", json_body={"email": email})
                timings[kind].append(time.perf_counter() - started)
                assert answer.status == 202
                time.sleep(0.01)
    known_median = statistics.median(timings["known"])
    unknown_median = statistics.median(timings["unknown"])
    assert abs(known_median - unknown_median) <= 0.2 * min(known_median, unknown_median), (
        known_median,
        unknown_median,
    )


def test_mail_is_sealed_in_the_queue_and_wiped_once_sent(app, services, mailbox, member, clock):
    from app.core import codes
    from app.core.events import Origin

    services.sender.stop()  # look at the queue before anything is sent
    ask(services, clock, member.email, origin=Origin("203.0.113.1", ""))
    with services.session() as db:
        [row] = db.scalars(select(OutboxMessage)).all()
        assert (row.kind, row.to_address, row.status) == ("sign_in_code", member.email, "pending")
        assert b"code is" not in row.body_sealed
        assert row.give_up_at == clock.now() + codes.CODE_LIFETIME
        message_id = row.message_id
    from app.outbox import deliver_due

    assert deliver_due(services) == 1
    [mail] = mailbox.wait_for(member.email)
    assert mail["Message-ID"] == message_id  # the queued message's own, on every attempt
    with services.session() as db:
        [row] = db.scalars(select(OutboxMessage)).all()
        assert (row.status, row.body_sealed, row.attempts) == ("sent", None, 1)


def test_a_code_mail_is_given_up_once_the_code_expired(new_app, member, clock):
    from app.core.events import Origin
    from app.outbox import deliver_due

    port = free_port()  # nothing listens: the relay refuses
    app = new_app(MAIL_URL=f"smtp://127.0.0.1:{port}", MAIL_TIMEOUT=1)
    services = app.extensions["holdfast"]
    services.sender.stop()
    ask(services, clock, member.email, origin=Origin("203.0.113.1", ""))
    assert deliver_due(services) == 1  # refused: due again in 5 s
    clock.advance(minutes=11)
    with real_relay(port) as box:
        assert deliver_due(services) == 0
        time.sleep(0.5)
        assert box.to(member.email) == []  # a stale code is not mailed
    with services.session() as db:
        [row] = db.scalars(select(OutboxMessage)).all()
        assert (row.status, row.body_sealed) == ("expired", None)
        assert (
            "connect" in (row.last_error or "").lower()
            or "refused" in (row.last_error or "").lower()
        )


def test_a_relay_refusing_for_good_fails_the_message_at_once(new_app, member, clock):
    from app.mail import Message
    from app.outbox import deliver_due, queue_message

    class Refusing:
        async def handle_RCPT(self, _server: Any, _session: Any, _envelope: Any, *_: Any) -> str:
            return "550 5.1.1 No such mailbox here"

    port = free_port()
    controller = Controller(Refusing(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        app = new_app(MAIL_URL=f"smtp://127.0.0.1:{port}")
        services = app.extensions["holdfast"]
        services.sender.stop()
        with services.session(write=True) as db:
            queue_message(
                db,
                Message(member.email, "Hello", "Body"),
                tenant_id=member.tenant_id,
                kind="test",
                now=clock.now(),
            )
            db.commit()
        assert deliver_due(services) == 1
    finally:
        controller.stop()
    with services.session() as db:
        [row] = db.scalars(select(OutboxMessage)).all()
        assert (row.status, row.attempts, row.body_sealed) == ("failed", 1, None)
        assert "550" in row.last_error


def test_with_mail_left_to_the_worker_the_web_sends_none(new_app, member, mailbox):
    app = new_app(MAIL_SENDER="worker")
    services = app.extensions["holdfast"]
    assert services.sender is None
    client = app.test_client()
    assert client.post("/api/auth/login", json={"email": member.email}).status_code == 202
    time.sleep(0.5)
    assert mailbox.to(member.email) == []
    result = app.test_cli_runner().invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "Attempted 1 mail deliveries" in result.output
    assert len(mailbox.wait_for(member.email)) == 1


def test_mail_queued_by_another_process_is_found_by_polling(new_app, member, mailbox, clock):
    """A CLI command (or another node) starts no sender: a web process's sender, not woken
    by that commit, finds the message on its next look."""
    from app.mail import Message
    from app.outbox import POLL_SECONDS, queue_message

    web = new_app().extensions["holdfast"]
    assert web.sender.running
    elsewhere = new_app().extensions["holdfast"]
    elsewhere.sender.stop()
    with elsewhere.session(write=True) as db:
        queue_message(
            db,
            Message(member.email, "From the command line", "Hello"),
            tenant_id=member.tenant_id,
            kind="test",
            now=clock.now(),
        )
        db.commit()
    [mail] = mailbox.wait_for(member.email, timeout=POLL_SECONDS + 3)
    assert mail["Subject"] == "From the command line"


def test_admins_see_their_tenants_undelivered_mail(app, services, mailbox, make, clock):
    """The Mail page lists what waits (with the relay's last answer) and what was given
    up, for the admin's own tenant only; bodies are never shown."""
    from sqlalchemy import update

    from app.mail import Message
    from app.outbox import queue_message
    from testkit.web import sign_in

    acme = make.tenant("acme")
    boss = make.user("boss@acme.test", acme, role="admin")
    globex = make.tenant("globex")
    browser = sign_in(app, mailbox, boss.email)
    mailbox.count(boss.email)  # the sign-in's own mail is out
    services.sender.stop()
    with services.session(write=True) as db:
        for tenant, to, kind in (
            (acme, "sam@acme.test", "sign_in_code"),
            (acme, "kim@acme.test", "new_device"),
            (globex, "gus@globex.test", "sign_in_code"),
        ):
            queue_message(
                db,
                Message(to, "Subject", "the secret body 424242"),
                tenant_id=tenant.id,
                kind=kind,
                now=clock.now(),
            )
        db.commit()
        db.execute(
            update(OutboxMessage)
            .where(OutboxMessage.to_address == "kim@acme.test")
            .values(status="failed", last_error="550 5.1.1 No such mailbox", body_sealed=None)
        )
        db.execute(
            update(OutboxMessage)
            .where(OutboxMessage.to_address == "sam@acme.test")
            .values(attempts=2, last_error="timed out")
        )
        db.commit()
    page = browser.get("/admin/mail")
    assert page.status_code == 200
    assert "1</strong> waiting" in page.text and "1</strong> not delivered" in page.text
    waiting = page.text.split('id="mail-waiting"')[1].split('id="mail-given-up"')[0]
    assert "sam@acme.test" in waiting and "Sign-in code" in waiting and "timed out" in waiting
    given_up = page.text.split('id="mail-given-up"')[1]
    assert "kim@acme.test" in given_up and "550 5.1.1 No such mailbox" in given_up
    assert "gus@globex.test" not in page.text  # another tenant's
    assert "424242" not in page.text
    assert 'href="/admin/mail" aria-current="page"' in page.text
