"""Mail in tests and benchmarks: the mailbox of the aiosmtpd test server, waiting for the
outbox to drain, and running an app's mail sender for the length of a block."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from flask import Flask
from sqlalchemy import func, or_, select

from app.mail import plain_text
from app.models import OutboxMessage
from app.services import Services

#: the test SMTP server's mailbox by the MAIL_URL that reaches it (the ``smtp_server``
#: fixture registers it), so :func:`sending` knows which mailbox waits for an app's mail
MAILBOXES: dict[str, Mailbox] = {}


class Mailbox:
    """Everything the SMTP test server received."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self._by_address: dict[str, list[EmailMessage]] = {}
        #: the sign-in code in a message, by the message's id(), read once
        self._codes: dict[int, str | None] = {}
        self._lock = threading.Lock()
        #: the apps of the running test, whose queued mail :meth:`count` waits for
        self.senders: list[Services] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)  # type: ignore[arg-type]
        # the code mail in English or German (app.i18n.LANGUAGES)
        match = re.search(r"(?:code is|Anmeldecode lautet) (\d{6})", plain_text(message))
        with self._lock:
            self.messages.append(message)
            self._by_address.setdefault(str(message["To"]), []).append(message)
            self._codes[id(message)] = match.group(1) if match else None
        return "250 OK"

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
            self._by_address.clear()
            self._codes.clear()

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return list(self._by_address.get(address, ()))

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
                code = self._codes.get(id(mail))
                if code:
                    return code
            if time.monotonic() > deadline:
                raise AssertionError(f"no code mail number {count} to {address} within {timeout}s")
            time.sleep(0.02)


def outbox_drained(services: Services, timeout: float = 5.0) -> None:
    """Wait until the outbox holds no message that is due or on its first way out (the
    sender handed each to the relay or gave it up; a claimed message's due time lies
    ahead, but no attempt was written down yet): from then on the mailbox holds all there
    is to hold, so a test can check that some mail did not come, or how many did."""
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


@contextmanager
def sending(application: Flask) -> Iterator[Flask]:
    """The app with its mail sender running from the start (a web process starts it on
    its first request), so mail a test queues through the core is delivered too; the
    test's mailbox knows to wait for it (Mailbox.count). Closed at the end."""
    services: Services = application.extensions["holdfast"]
    box = MAILBOXES.get(str(application.config.get("MAIL_URL")))
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
