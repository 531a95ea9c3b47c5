"""Sending mail: SMTP (``smtp://`` or ``smtps://``, optional ``user:password@``) or the
console, which prints each message to the server's log for development."""

from __future__ import annotations

import logging
import smtplib
import ssl
import sys
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol, TextIO
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    to: str
    subject: str
    text: str


class Mailer(Protocol):
    def send(self, message: Message) -> None: ...


class ConsoleMailer:
    """Prints mail where the person running ``make run`` can read it."""

    def __init__(self, sender: str, stream: TextIO | None = None) -> None:
        self.sender = sender
        self.stream = stream

    def send(self, message: Message) -> None:
        stream = self.stream or sys.stderr
        rule = "-" * 60
        stream.write(
            f"\n{rule}\nMail to {message.to}\nSubject: {message.subject}\n\n"
            f"{message.text}\n{rule}\n"
        )
        stream.flush()


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
        timeout: float = 10.0,
    ) -> None:
        self.sender = sender
        self.host = host
        self.port = port
        self.implicit_tls = implicit_tls
        self.starttls = starttls
        self.username = username
        self.password = password
        self.timeout = timeout

    def send(self, message: Message) -> None:
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = message.to
        email["Subject"] = message.subject
        email["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        email.set_content(message.text)
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.implicit_tls:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with smtp:
            if self.starttls:
                smtp.starttls(context=context)
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(email)


def mailer_from_url(url: str, sender: str) -> Mailer:
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
    )
