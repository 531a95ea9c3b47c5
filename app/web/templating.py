"""Template filters and globals: times people can read, device labels and icons."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import segno
from flask import Flask
from flask_babel import gettext, ngettext
from markupsafe import Markup

from app.core.totp import Enrolment
from app.i18n import N_plural
from app.models import Device
from app.user_agents import KIND_WORDS, describe
from app.version import __version__
from app.web.unit_of_work import now

# Outline icons drawn with a few SVG paths (no icon font, nothing inline to run).
_SVG = (
    '<svg viewBox="0 0 24 24" width="28" height="28" fill="none" stroke="currentColor" '
    'stroke-width="1.6" stroke-linecap="round" stroke-linejoin="round">{}</svg>'
)
ICONS = {
    "phone": '<rect x="7" y="2.5" width="10" height="19" rx="2"/><path d="M11 18.5h2"/>',
    "tablet": '<rect x="4.5" y="2.5" width="15" height="19" rx="2"/><path d="M11 18.5h2"/>',
    "desktop": '<rect x="2.5" y="4" width="19" height="12" rx="1.5"/><path d="M8 20h8M12 16v4"/>',
    "bot": '<rect x="5" y="8" width="14" height="11" rx="2"/>'
    '<path d="M12 4v4M9 13h.01M15 13h.01"/>',
    "other": '<circle cx="12" cy="12" r="9"/><path d="M12 8v5M12 16h.01"/>',
}


def enrolment_page(enrolment: Enrolment) -> dict[str, Any]:
    """What the add-an-app page shows of a pending secret: the key in groups of four and
    its QR code (segno's own SVG)."""
    secret = enrolment.secret
    qr = segno.make(enrolment.uri, error="m")
    return {
        "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        "qr": Markup(qr.svg_inline(scale=5, border=4, title="QR code for your authenticator app")),  # noqa: S704 (segno's own SVG, no input from the request but the URI it encodes)
    }


def kind_icon(kind: str) -> Markup:
    return Markup(_SVG.format(ICONS.get(kind, ICONS["other"])))  # noqa: S704 (constants only)


def when(moment: datetime | None) -> str:
    return "—" if moment is None else f"{moment:%d %b %Y, %H:%M} UTC"


#: a span in words, past and future, by unit (ngettext forms: %(num)s is the count)
_SPANS = {
    "day": (
        N_plural("%(num)s day ago", "%(num)s days ago"),
        N_plural("in %(num)s day", "in %(num)s days"),
    ),
    "hour": (
        N_plural("%(num)s hour ago", "%(num)s hours ago"),
        N_plural("in %(num)s hour", "in %(num)s hours"),
    ),
    "minute": (
        N_plural("%(num)s minute ago", "%(num)s minutes ago"),
        N_plural("in %(num)s minute", "in %(num)s minutes"),
    ),
}


def ago(moment: datetime | None) -> str:
    """A time in relative words in the page's language ("5 minutes ago", "vor 5
    Minuten"): what shows before static/js/times.js refreshes it, or without JavaScript."""
    if moment is None:
        return gettext("never")
    seconds = int((now() - moment).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            one, other = _SPANS[unit][future]
            return ngettext(one, other, seconds // size)
    return gettext("in under a minute") if future else gettext("just now")


def day(value: datetime | None) -> str:
    """A date as pages print it without JavaScript: ``6 Dec 2026`` (UTC)."""
    return "—" if value is None else f"{value.day} {value:%b %Y}"


def _time(value: datetime, kind: str, text: str) -> Markup:
    """A <time> element static/js/times.js rewrites in the viewer's time zone and
    language (``kind``: relative, datetime or date); ``text`` is what shows without
    JavaScript, in UTC, and the exact UTC time is on hover either way."""
    iso = value.isoformat().replace("+00:00", "Z")
    return Markup('<time datetime="{}" data-format="{}" title="{}">{}</time>').format(
        iso, kind, when(value), text
    )


def moment(value: datetime | None) -> Markup:
    """A time in relative words ("5 minutes ago"), refreshed in the page as time passes;
    the exact time on hover."""
    return Markup("—") if value is None else _time(value, "relative", ago(value))


def at(value: datetime | None) -> Markup:
    """A date and time ("6 Dec 2026, 15:05 CET" in the viewer's zone)."""
    return Markup("—") if value is None else _time(value, "datetime", when(value))


def on_day(value: datetime | None) -> Markup:
    """A date ("6 Dec 2026" in the viewer's zone)."""
    return Markup("—") if value is None else _time(value, "date", day(value))


def kind_word(kind: str) -> str:
    """A device kind in the page's language ("tablet", "Tablet")."""
    return gettext(KIND_WORDS.get(kind, KIND_WORDS["other"]))


def device_name(device: Device) -> str:
    """A device as pages call it, in their language: the name its person gave it, else
    its browser on its OS ("Safari on iOS", "Safari auf iOS"); Device.display_name is the
    same in English, for the API, logs and mails' stored facts."""
    if device.name:
        return device.name
    if device.browser and device.os:
        return gettext("%(browser)s on %(os)s", browser=device.browser, os=device.os)
    return device.browser or device.os or gettext("Unknown device")


def device_label(user_agent: str) -> str:
    info = describe(user_agent or "")
    if info.browser and info.os:
        return gettext("%(browser)s on %(os)s", browser=info.browser, os=info.os)
    return info.browser or info.os or gettext("Unknown device")


def init_app(app: Flask) -> None:
    app.add_template_filter(when)
    app.add_template_filter(ago)
    app.add_template_filter(moment)
    app.add_template_filter(at)
    app.add_template_filter(on_day)
    app.add_template_filter(device_label)
    app.add_template_filter(device_name)
    app.add_template_filter(kind_icon)
    app.add_template_filter(kind_word)
    app.add_template_global(now)
    app.jinja_env.globals["holdfast_version"] = __version__  # the page footer
