"""The outbox: mail leaves after the transaction that caused it commits, never inside a
request.

* **Queued with its cause.** :func:`queue_mail` adds a row to the caller's transaction, so
  a sign-in code is in the queue exactly when its challenge is in the database, and a
  rolled-back sign-in mails nothing. The body is sealed (app.sealing): it can hold a
  sign-in code or a link's secret, and a database dump must not give those away. Only
  the address, subject and kind stay readable, for the admin's view of what is stuck;
  the body is wiped once the message is sent or given up.
* **Claimed, then sent with nothing held.** A sender claims a batch of due messages (on
  PostgreSQL with ``FOR UPDATE SKIP LOCKED``; on SQLite under the write lock), which moves
  their due time past a lease, and commits; it then hands them to the relay on one
  connection with no transaction open (SQLite's write lock is never held across the
  network), and writes down each outcome. A sender that dies half-way leaves its
  messages to be claimed again when the lease runs out.
* **Who sends.** ``holdfast worker`` where one runs: it reports a heartbeat, and while a
  heartbeat is fresh the web processes leave the queue to it. Otherwise each web process
  sends from a :class:`BackgroundSender` thread of its own, and polls every few seconds
  for retries and for mail queued elsewhere (a CLI command, another node). The process
  that queues a message then also claims it in the same transaction and, once that
  commits, hands it to its sender in memory: the first attempt starts at once and costs
  no claiming transaction. ``make run`` and a plain ``gunicorn wsgi:app`` deliver with
  nothing else started.
* **Retries.** A failure the relay may get over (no connection, a timeout, a 4xx answer)
  is tried again after 5 s, 15 s, 30 s, 1, 2, 5 and 10 minutes, then every 15 minutes.
  A 5xx answer (refused for good) fails at once. A message is given up after a day
  (``failed``), or at its ``give_up_at`` (``expired``): a sign-in code mailed after it
  expired would only confuse.
* **Twice only when the relay's answer was lost.** A message goes out again only when
  no outcome was written for it: the relay took it, then the sender died or the
  connection broke before the relay's "250 OK" was read. The second copy carries the
  same Message-ID, by which mail clients recognise it as the same message.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime, make_msgid
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app import signals
from app.clock import utcnow
from app.mail import Mailer, MailError, Message, compose
from app.mail_templates import MailTemplates
from app.models import OutboxMessage, WorkerHeartbeat, new_id
from app.sealing import MAIL_BODY, Sealer, Unsealable

log = logging.getLogger(__name__)

#: messages one sender claims and sends on one connection
BATCH = 10
#: how long after a failed attempt the next one comes, by attempt number; then LATER
RETRY_DELAYS = tuple(timedelta(seconds=s) for s in (5, 15, 30, 60, 120, 300, 600))
LATER = timedelta(minutes=15)
#: a message that has not gone out within this is given up (status failed)
GIVE_UP_AFTER = timedelta(days=1)
#: how often an idle sender looks for due messages (a commit that queues one wakes it)
POLL_SECONDS = 5.0
#: a worker whose last heartbeat is older than this is taken for gone
WORKER_FRESH = timedelta(seconds=15)
#: how often ``holdfast worker`` reports
HEARTBEAT_EVERY = timedelta(seconds=5)


class Outbox:
    """What queueing and sending share: the mail templates, the sealer bodies are sealed
    with, the sender's address (for Message-IDs), and who to tell when a commit queued
    mail."""

    def __init__(self, sealer: Sealer, sender: str, templates: MailTemplates | None = None) -> None:
        self._sealer = sealer
        self.sender = sender
        self.templates = templates or MailTemplates()
        address = sender.rpartition("<")[2].rstrip(">").strip()
        self.domain = address.rpartition("@")[2] or "localhost"
        #: called after a commit that queued mail, with the messages this process claimed
        #: (a web process's sender takes them and wakes up)
        self.listeners: list[Callable[[list[Claimed]], None]] = []
        #: set while this process's own sender sends (no worker runs): queued messages are
        #: claimed for it for this long (see the module docstring)
        self.claim_for: timedelta | None = None

    def seal(self, row_id: str, message: Message) -> bytes:
        """Both parts of the body, sealed together (JSON: ``text`` and ``html``)."""
        body = json.dumps({"text": message.text, "html": message.html})
        return self._sealer.seal(MAIL_BODY, body.encode(), row_id)

    def open(self, row: OutboxMessage) -> Message | None:
        """The row's message, or None when its body cannot be opened (sealed under a
        secret key that is no longer configured, not even as a fallback). A body queued
        before mail had an HTML part is the plain text alone."""
        try:
            plain = self._sealer.open(MAIL_BODY, row.body_sealed or b"", row.id).decode()
        except Unsealable:
            return None
        text, html = plain, None
        if plain.startswith('{"text": '):
            body = json.loads(plain)
            text, html = body["text"], body["html"]
        return Message(to=row.to_address, subject=row.subject, text=text, html=html)

    def queued(self, claimed: list[Claimed]) -> None:
        for listener in self.listeners:
            listener(claimed)


def queue_mail(
    db: Session,
    kind: str,
    *,
    to: str,
    values: Mapping[str, Any],
    tenant_id: str,
    now: datetime,
    give_up_at: datetime | None = None,
    language: str | None = None,
) -> OutboxMessage:
    """Add the ``kind`` mail to ``to`` (rendered from ``templates/mail/<kind>/`` with
    ``values`` in ``language``, see app.mail_templates) to the outbox in ``db``'s
    transaction; it is sent once that commits. ``give_up_at``: never send it after then
    (a code's expiry)."""
    outbox: Outbox = db.info["outbox"]
    message = outbox.templates.render(kind, to=to, values=values, language=language)
    return queue_message(
        db, message, kind=kind, tenant_id=tenant_id, now=now, give_up_at=give_up_at
    )


def queue_message(
    db: Session,
    message: Message,
    *,
    kind: str,
    tenant_id: str,
    now: datetime,
    give_up_at: datetime | None = None,
) -> OutboxMessage:
    """Add a message already written to the outbox (:func:`queue_mail` renders one)."""
    outbox: Outbox = db.info["outbox"]
    row_id = new_id("msg")
    row = OutboxMessage(
        id=row_id,
        tenant_id=tenant_id,
        kind=kind,
        to_address=message.to,
        subject=message.subject[:300],
        body_sealed=outbox.seal(row_id, message),
        message_id=make_msgid(domain=outbox.domain),
        status="pending",
        attempts=0,
        created_at=now,
        next_attempt_at=now,
        give_up_at=give_up_at,
    )
    claimed = db.info.setdefault("mail_queued", [])
    lease = outbox.claim_for
    if lease is not None:
        row.next_attempt_at = now + lease
        claimed.append(
            Claimed(row.id, message, row.message_id, date=format_datetime(row.created_at))
        )
    db.add(row)
    return row


def after_commit(db: Session) -> None:
    """Tell the process's sender that mail was queued, handing it what this process
    claimed (run after every commit)."""
    claimed = db.info.pop("mail_queued", None)
    if claimed is not None:
        outbox: Outbox | None = db.info.get("outbox")
        if outbox is not None:
            outbox.queued(claimed)


def after_rollback(db: Session) -> None:
    db.info.pop("mail_queued", None)


# --- claiming, sending, settling ------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """A message a sender took, with what it needs to send it outside any transaction."""

    id: str
    message: Message
    message_id: str
    #: the Date header: when it was queued
    date: str


@dataclass(frozen=True)
class Outcome:
    id: str
    #: None: the relay took it
    error: str | None = None
    #: the relay refused it for good
    permanent: bool = False
    #: False: the sender ran out of time before trying it (it goes back as it was)
    attempted: bool = True


def lease_for(mailer: Mailer, batch: int = BATCH) -> timedelta:
    """How long a claim holds: longer than a batch can take with every step of it at
    the relay's timeout, so no two senders ever hold the same message."""
    timeout = float(getattr(mailer, "timeout", 10.0))
    return timedelta(seconds=timeout * (batch + 6))


def anything_due(db: Session, *, now: datetime) -> bool:
    """Whether any message is due now (a read: no lock taken)."""
    due = (
        select(OutboxMessage.id)
        .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now)
        .limit(1)
        .execution_options(all_tenants=True)
    )
    return db.scalar(due) is not None


def claim_due(
    db: Session, outbox: Outbox, *, now: datetime, lease: timedelta, limit: int = BATCH
) -> list[Claimed]:
    """Take up to ``limit`` messages that have been due longest, across tenants; those
    past their ``give_up_at`` are marked expired instead. Commit before sending."""
    query = (
        select(OutboxMessage)
        .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now)
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
        .execution_options(all_tenants=True)
    )
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claimed = []
    for row in db.scalars(query):
        if row.give_up_at is not None and row.give_up_at <= now:
            last = f" (last error: {row.last_error})" if row.last_error else ""
            _close(row, "expired", f"expired before the relay took it{last}")
            continue
        message = outbox.open(row)
        if message is None:
            _close(row, "failed", "the message cannot be opened (was the secret key changed?)")
            continue
        row.next_attempt_at = now + lease
        claimed.append(
            Claimed(
                id=row.id,
                message=message,
                message_id=row.message_id,
                date=format_datetime(row.created_at),
            )
        )
    db.flush()
    return claimed


def send(mailer: Mailer, claimed: list[Claimed], *, within: float) -> list[Outcome]:
    """Hand ``claimed`` to the relay on one connection, starting no new message after
    ``within`` seconds. Never raises: every failure is an Outcome."""
    outcomes: dict[str, Outcome] = {}
    started = time.monotonic()
    try:
        with mailer.connect() as deliver:
            for item in claimed:
                if time.monotonic() - started > within:
                    outcomes[item.id] = Outcome(item.id, attempted=False)
                    continue
                email = compose(
                    mailer.sender, item.message, message_id=item.message_id, date=item.date
                )
                try:
                    deliver(email)
                except MailError as error:
                    outcomes[item.id] = Outcome(item.id, str(error), permanent=error.permanent)
                else:
                    outcomes[item.id] = Outcome(item.id)
    except MailError as error:  # no connection (or it broke outside a message)
        for item in claimed:
            outcomes.setdefault(item.id, Outcome(item.id, str(error)))
    except Exception as error:  # a bug, or a relay answering nonsense: retried, not lost
        log.exception("sending mail failed")
        for item in claimed:
            outcomes.setdefault(item.id, Outcome(item.id, f"{type(error).__name__}: {error}"))
    return [outcomes[item.id] for item in claimed]


def retry_delay(attempts: int) -> timedelta:
    """How long after the ``attempts``-th failed attempt the next one comes."""
    return RETRY_DELAYS[attempts - 1] if 0 < attempts <= len(RETRY_DELAYS) else LATER


def settle(db: Session, outcomes: list[Outcome], *, now: datetime) -> list[OutboxMessage]:
    """Write down each attempt: sent (all of them in one statement), due again after its
    delay, or given up. Returns the rows of the attempts that failed, as written down."""
    sent = [o.id for o in outcomes if o.attempted and o.error is None]
    if sent:
        db.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(sent), OutboxMessage.status == "pending")
            .values(
                status="sent",
                sent_at=now,
                last_attempt_at=now,
                attempts=OutboxMessage.attempts + 1,
                body_sealed=None,
                last_error=None,
            )
            .execution_options(synchronize_session=False, all_tenants=True)
        )
    failed = []
    for outcome in outcomes:
        if outcome.id in sent:
            continue
        row = db.get(OutboxMessage, outcome.id)
        if row is None or row.status != "pending":
            continue
        if not outcome.attempted:
            row.next_attempt_at = now
            continue
        row.attempts += 1
        row.last_attempt_at = now
        error = outcome.error or "no answer"
        if outcome.permanent:
            _close(row, "failed", error)
        else:
            due = now + retry_delay(row.attempts)
            if row.give_up_at is not None and due >= row.give_up_at:
                _close(row, "expired", error)
            elif due >= row.created_at + GIVE_UP_AFTER:
                _close(row, "failed", error)
            else:
                row.last_error = error[:300]
                row.next_attempt_at = due
        failed.append(row)
    db.flush()
    return failed


def _close(row: OutboxMessage, status: str, error: str) -> None:
    row.status = status
    row.last_error = error[:300]
    row.body_sealed = None


def deliver_due(services: Any, *, stop: threading.Event | None = None, batch: int = BATCH) -> int:
    """Send every message due now, a batch at a time (claim, send, settle); how many
    were tried. Stops early when the relay cannot be reached (the rest wait for their
    retry) or ``stop`` is set."""
    tried = 0
    lease = lease_for(services.mailer, batch)
    while stop is None or not stop.is_set():
        with services.session() as db:  # a read first: on SQLite no write lock for nothing
            if not anything_due(db, now=services.clock.now()):
                break
        with services.session(write=True) as db:
            claimed = claim_due(db, services.outbox, now=services.clock.now(), lease=lease)
            db.commit()
        if not claimed:
            break
        outcomes = deliver(services, claimed, lease=lease)
        tried += sum(outcome.attempted for outcome in outcomes)
        if all(outcome.error is not None for outcome in outcomes):
            break  # the relay is down: the rest wait for their retry
    return tried


def deliver(services: Any, claimed: list[Claimed], *, lease: timedelta) -> list[Outcome]:
    """Send messages this process holds claims on, and write down each outcome."""
    outcomes = send(services.mailer, claimed, within=lease.total_seconds() / 2)
    with services.session(write=True) as db:
        settled = settle(db, outcomes, now=services.clock.now())
        db.commit()
    signals.mail_attempted.send(services.database, outcomes=outcomes, settled=settled)
    for outcome in outcomes:
        if outcome.error is not None:
            log.warning("mail %s not delivered: %s", outcome.id, outcome.error)
    return outcomes


# --- who sends --------------------------------------------------------------------------------


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


def report_worker(db: Session, name: str) -> None:
    """A running worker says so (real time, whatever clock the app runs on)."""
    db.merge(WorkerHeartbeat(name=name, seen_at=utcnow()))


def worker_gone(db: Session, name: str) -> None:
    db.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.name == name))


def worker_running(db: Session) -> bool:
    """Whether a ``holdfast worker`` reported lately."""
    newest = db.scalar(select(func.max(WorkerHeartbeat.seen_at)))
    return newest is not None and newest > utcnow() - WORKER_FRESH


class BackgroundSender:
    """A web process's own sender (see the module docstring): one daemon thread, started
    by the process's first request, so never in a gunicorn master or a CLI command. It
    holds the app's services only weakly and ends when they are gone or on
    :meth:`stop`."""

    def __init__(self, services: Any, *, poll: float = POLL_SECONDS) -> None:
        self._services = weakref.ref(services)
        self._outbox: Outbox = services.outbox
        self._lease = lease_for(services.mailer)
        self.poll = poll
        #: messages this process queued and claimed for this sender, sent first
        self._handed: deque[Claimed] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        _SENDERS.add(self)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="holdfast-mail-sender", daemon=True
                )
                self._wake.set()  # look at once: what is due, and whether a worker runs
                self._thread.start()

    def wake(self, claimed: list[Claimed] | None = None) -> None:
        if claimed:
            self._handed.extend(claimed)
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._outbox.claim_for = None  # nobody here sends any more

    def _run(self) -> None:
        pause = self.poll
        looked_at = float("-inf")  # when the queue was last looked at (monotonic)
        while not self._stop.is_set():
            self._wake.wait(max(0.0, min(pause, looked_at + pause - time.monotonic())))
            self._wake.clear()
            if self._stop.is_set():
                return
            services = self._services()
            if services is None:
                return
            try:
                handed = [self._handed.popleft() for _ in range(min(BATCH, len(self._handed)))]
                if handed:
                    deliver(services, handed, lease=self._lease)
                    if self._handed:
                        self._wake.set()  # more were handed meanwhile
                # The queue itself (retries, mail queued elsewhere) once per poll interval,
                # not on every wake: a wake is this process's own mail, handed over above.
                if time.monotonic() - looked_at >= pause:
                    looked_at = time.monotonic()
                    with services.session() as db:
                        leave_it = worker_running(db)
                    # Claim what this process queues while it is the one sending.
                    self._outbox.claim_for = None if leave_it else self._lease
                    if not leave_it:
                        deliver_due(services, stop=self._stop)
                pause = self.poll
            except Exception:  # a database outage: keep the thread, try again later
                log.exception("the mail sender could not run")
                pause = min(pause * 2, 60.0)
            finally:
                del services

    def _forget(self) -> None:
        """In a forked child: the parent's thread is not there."""
        self._thread = None
        self._lock = threading.Lock()


_SENDERS: weakref.WeakSet[BackgroundSender] = weakref.WeakSet()


def _forget_parents_threads() -> None:
    for sender in list(_SENDERS):
        sender._forget()


os.register_at_fork(after_in_child=_forget_parents_threads)
