"""Talking to the mail relay: SMTP (``smtp://`` or ``smtps://``, optional
``user:password@``) or the console, which prints each message to the server's log for
development.

Nothing here is called inside a request: mail is queued in the database (app.outbox) and
handed to a relay afterwards by a sender, which opens one connection for a batch of
messages (:meth:`SmtpMailer.connect`). Every network step has a timeout, the name
lookup included, so a relay that accepts connections and never answers holds up only
its sender, for at most ``timeout`` seconds a step.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol, TextIO
from urllib.parse import unquote, urlsplit

from app import dns
from app.internals import smtp_clients

log = logging.getLogger(__name__)

#: seconds a relay may take for each step (name lookup, connect, each command)
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Message:
    """A mail as it is queued: who to, the subject, the plain-text body and the same in
    HTML (app.mail_templates renders both)."""

    to: str
    subject: str
    text: str
    html: str | None = None


#: hands one composed message to the relay on an open connection
Send = Callable[[EmailMessage], None]


class Mailer(Protocol):
    sender: str

    def connect(self) -> AbstractContextManager[Send]: ...


class MailError(Exception):
    """The relay did not take a message. ``permanent`` when it refused it for good (a
    5xx answer: trying again would get the same), else a passing failure worth a retry
    (no connection, a timeout, a 4xx answer)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def compose(sender: str, message: Message, *, message_id: str, date: str) -> EmailMessage:
    """The message as it goes on the wire; ``message_id`` and ``date`` are the queued
    message's own, the same on every attempt."""
    email = EmailMessage()
    email["From"] = sender
    email["To"] = message.to
    email["Subject"] = message.subject
    email["Date"] = date
    email["Message-ID"] = message_id
    email.set_content(message.text)
    if message.html is not None:
        email.add_alternative(message.html, subtype="html")
    return email


def plain_text(email: EmailMessage) -> str:
    """A composed or received mail's plain-text part (or its only part)."""
    part = email.get_body(preferencelist=("plain",))
    if part is None:
        raise ValueError("the mail has no plain-text part")
    return str(part.get_content())


class ConsoleMailer:
    """Prints mail where the person running ``make run`` can read it."""

    def __init__(self, sender: str, stream: TextIO | None = None) -> None:
        self.sender = sender
        self.stream = stream

    @contextmanager
    def connect(self) -> Iterator[Send]:
        def send(email: EmailMessage) -> None:
            stream = self.stream or sys.stderr
            rule = "-" * 60
            body = plain_text(email).rstrip("\n")
            stream.write(
                f"\n{rule}\nMail to {email['To']}\nSubject: {email['Subject']}\n\n{body}\n{rule}\n"
            )
            stream.flush()

        yield send


class MemoryMailer:
    """Keeps every message it is handed, in order (``sent``): for tests and benchmarks
    that read the sign-in code without an SMTP server. ``on_send`` is told of each."""

    def __init__(
        self,
        sender: str = "Holdfast <no-reply@localhost>",
        on_send: Callable[[EmailMessage], None] | None = None,
    ) -> None:
        self.sender = sender
        self.sent: list[EmailMessage] = []
        self.on_send = on_send

    @contextmanager
    def connect(self) -> Iterator[Send]:
        def send(email: EmailMessage) -> None:
            self.sent.append(email)
            if self.on_send is not None:
                self.on_send(email)

        yield send

    def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        """The messages, once there are at least ``count`` (mail goes out after the
        request that queued it). Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while len(self.sent) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} messages did not come within {timeout:g} s")
            time.sleep(0.01)
        return list(self.sent)


class SmtpMailer:
    def __init__(
        self,
        sender: str,
        host: str,
        port: int,
        *,
        implicit_tls: bool = False,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.sender = sender
        self.host = host
        self.port = port
        self.implicit_tls = implicit_tls
        self.starttls = starttls
        self.username = username
        self.password = password
        self.timeout = timeout
        self._context: ssl.SSLContext | None = None

    def _tls(self) -> ssl.SSLContext:
        """The TLS settings, made on first use and kept: making them loads the system's
        certificate authorities, which costs more than sending a message."""
        if self._context is None:
            self._context = ssl.create_default_context()
        return self._context

    @contextmanager
    def connect(self) -> Iterator[Send]:
        """One connection to the relay, for as many messages as the caller sends on it.
        Raises MailError when the relay cannot be reached or refuses a message."""
        try:
            smtp: smtplib.SMTP
            if self.implicit_tls:
                smtp = _SMTPS(timeout=self.timeout, context=self._tls())
            else:
                smtp = _SMTP(timeout=self.timeout)
            smtp.connect(self.host, self.port)
        except MailError:
            raise
        except (OSError, smtplib.SMTPException) as error:
            raise _mail_error(error) from error
        try:
            if self.starttls:
                smtp.starttls(context=self._tls())
            if self.username:
                smtp.login(self.username, self.password or "")

            def send(email: EmailMessage) -> None:
                try:
                    smtp.send_message(email)
                except (OSError, smtplib.SMTPException) as error:
                    raise _mail_error(error) from error

            yield send
        except (OSError, smtplib.SMTPException) as error:
            raise _mail_error(error) from error
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()


def _mail_error(error: BaseException) -> MailError:
    """A relay's failure as a MailError: refused for good on a 5xx answer."""
    code = getattr(error, "smtp_code", None)
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [answer[0] for answer in error.recipients.values()]
        code = min(codes) if codes else None
    text = str(error) or type(error).__name__
    return MailError(text[:300], permanent=isinstance(code, int) and 500 <= code < 600)


def resolve(host: str, port: int, *, timeout: float) -> str:
    """The first address ``host`` resolves to within ``timeout`` seconds (app.dns).
    Raises MailError (not found, or too slow)."""
    found = dns.lookup(host, port, timeout=timeout)
    if not found:
        raise MailError(f"{host} could not be found within {timeout:g} s")
    return found[0]


#: smtplib's clients, looking the relay's name up within the timeout (app.internals)
_SMTP, _SMTPS = smtp_clients(resolve)


def mailer_from_url(url: str, sender: str, *, timeout: float = DEFAULT_TIMEOUT) -> Mailer:
    """``console``, ``smtp://host:port`` (``?starttls=1`` to upgrade) or ``smtps://host:port``."""
    if url == "console":
        return ConsoleMailer(sender)
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError(
            f"HOLDFAST_MAIL_URL must be 'console', smtp://host:port or smtps://…, not {url!r}"
        )
    implicit_tls = parts.scheme == "smtps"
    return SmtpMailer(
        sender,
        parts.hostname,
        parts.port or (465 if implicit_tls else 25),
        implicit_tls=implicit_tls,
        starttls="starttls=1" in parts.query,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        timeout=timeout,
    )
