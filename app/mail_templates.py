"""The mails Holdfast sends, written as Jinja templates, one folder per kind of mail:
``templates/mail/<kind>/subject.txt``, ``body.txt`` and ``body.html`` (which extends
``templates/mail/_layout.html``). Each mail goes out with a plain-text part and an HTML
part saying the same; the plain text is what a mail client without HTML shows and what
the tests read.

The core queues a mail by its kind and the facts it needs (app.outbox.queue_mail); it is
rendered there, in the request's transaction, and sealed with the rest of the message.
Times are UTC, written one way per language (``6 Dec 2026, 14:05 UTC``, ``6. Dez. 2026,
14:05 UTC``). The HTML part is escaped (a
person's name or a device's name is text, never markup); the text part is not. Templates
use no Flask: the worker and the CLI render them too. The i18n extension is on with the
recipient's catalog (app.i18n), so a template marks its words with ``_()`` and
``ngettext()``; a fact given in words the core holds in English (an alert's title, a
device kind) is translated in the template, never stored translated.

A mail is in its recipient's language: their own setting (``users.language``), else
English, the source language (a mail has no browser to ask). The one mail to someone
who has no setting yet, "you have been added", is in the language of the admin who added
them (app.core.people.add_person): people of one organisation mostly share it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from babel.dates import format_datetime
from babel.support import NullTranslations
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from app import i18n, paths
from app.i18n import N_
from app.mail import Message
from app.user_agents import KIND_WORDS

FOLDER = paths.TEMPLATES / "mail"


#: how each language other than English writes a mail's time (CLDR pattern, in UTC)
TIME_PATTERNS = {"de": "d. MMM y, HH:mm"}


def when(moment: datetime, language: str = "en") -> str:
    """A time as mails write it, in UTC: ``6 Dec 2026, 14:05 UTC`` in English,
    ``6. Dez. 2026, 14:05 UTC`` in German."""
    pattern = TIME_PATTERNS.get(language)
    if pattern is None:
        return f"{moment.day} {moment:%b %Y, %H:%M} UTC"
    return f"{format_datetime(moment, pattern, tzinfo=UTC, locale=language)} UTC"


def _mail_words(words: NullTranslations) -> dict[str, Callable[..., str]]:
    """The phrases several mails build from facts, in one language (``words``), as
    template globals. They return plain text, which an HTML part then escapes like any
    value (a Jinja macro imported from a text template would not be escaped there)."""

    def named_device(name: str | None, browser: str | None, os: str | None) -> str:
        """A device as mails call it: the name its person gave it, else its browser on
        its OS (app.models.Device.display_name, in the mail's language)."""
        if name:
            return name
        if browser and os:
            return words.gettext(N_("%(browser)s on %(os)s")) % {"browser": browser, "os": os}
        return browser or os or words.gettext(N_("Unknown device"))

    def kind_word(kind: str) -> str:
        return words.gettext(KIND_WORDS.get(kind, KIND_WORDS["other"]))

    def where(place: str | None, ip: str | None) -> str:
        """Where a sign-in came from: its place when known, and its address."""
        address = ip or words.gettext(N_("an unknown address"))
        if place:
            return words.gettext(N_("%(place)s (IP %(ip)s)")) % {"place": place, "ip": address}
        return address

    return {"named_device": named_device, "kind_word": kind_word, "where": where}


class MailTemplates:
    """Renders a kind of mail into a :class:`Message`. A missing template or a value the
    template names but was not given is an error (StrictUndefined): a mail with a blank
    where a link belongs must fail in the tests, not reach a person."""

    def __init__(self, folder: Path = FOLDER) -> None:
        # One environment per language, its catalog installed (app.i18n): a shared one
        # would swap catalogs under a render running in another thread. All are made
        # now, so that no request (a known address's first code) pays for one.
        self._envs = {language: self._environment(folder, language) for language in i18n.LANGUAGES}

    def _env_for(self, language: str | None) -> Environment:
        return self._envs[i18n.supported(language) or "en"]

    @staticmethod
    def _environment(folder: Path, language: str) -> Environment:
        env = Environment(
            loader=FileSystemLoader(folder),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=["jinja2.ext.i18n"],
        )
        env.install_gettext_translations(  # type: ignore[attr-defined]
            i18n.translations(language), newstyle=True
        )
        env.filters["when"] = lambda moment: when(moment, language)
        env.globals.update(_mail_words(i18n.translations(language)))
        env.globals["language"] = language
        return env

    def render(
        self, kind: str, *, to: str, values: Mapping[str, Any], language: str | None = None
    ) -> Message:
        """The ``kind`` mail to ``to``, in ``language`` (English when None or not
        spoken); raises jinja2.TemplateError when a template or a value it needs is
        missing."""
        env = self._env_for(language)
        subject = env.get_template(f"{kind}/subject.txt").render(values)
        return Message(
            to=to,
            subject=" ".join(subject.split()),
            text=env.get_template(f"{kind}/body.txt").render(values),
            html=env.get_template(f"{kind}/body.html").render(values),
        )
