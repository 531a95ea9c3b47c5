"""Template filters and globals: times people can read, device labels and icons."""

from __future__ import annotations

from datetime import datetime

from flask import Flask
from markupsafe import Markup, escape

from app.devices import describe
from app.web.context import now

ICONS = {"phone": "📱", "tablet": "📱", "desktop": "💻", "bot": "🤖", "other": "🖥️"}


def when(moment: datetime | None) -> str:
    return "—" if moment is None else f"{moment:%d %b %Y, %H:%M} UTC"


def ago(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    seconds = int((now() - moment).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            text = f"{count} {unit}{'' if count == 1 else 's'}"
            return f"in {text}" if future else f"{text} ago"
    return "in under a minute" if future else "just now"


def moment(value: datetime | None) -> Markup:
    """A <time> element: relative words, the exact UTC time on hover."""
    if value is None:
        return Markup("—")
    iso = value.isoformat().replace("+00:00", "Z")
    return Markup(f'<time datetime="{iso}" title="{escape(when(value))}">{escape(ago(value))}</time>')


def device_label(user_agent: str) -> str:
    info = describe(user_agent or "")
    if info.browser and info.os:
        return f"{info.browser} on {info.os}"
    return info.browser or info.os or "Unknown device"


def init_app(app: Flask) -> None:
    app.add_template_filter(when)
    app.add_template_filter(ago)
    app.add_template_filter(moment)
    app.add_template_filter(device_label)
    app.add_template_filter(lambda kind: ICONS.get(kind, ICONS["other"]), "kind_icon")
    app.add_template_global(now)
