"""What kind of device a user agent is: kind, OS and browser, via ``user-agents``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from user_agents import parse

from app.i18n import N_

DEVICE_KINDS = ("phone", "tablet", "desktop", "bot", "other")
#: each device kind in words, marked for the catalog (pages and mails translate them)
KIND_WORDS = {
    "phone": N_("phone"),
    "tablet": N_("tablet"),
    "desktop": N_("desktop"),
    "bot": N_("bot"),
    "other": N_("other device"),
}


@dataclass(frozen=True)
class DeviceInfo:
    kind: str
    os: str
    browser: str


@lru_cache(maxsize=1024)
def describe(user_agent: str) -> DeviceInfo:
    """Kind is one of DEVICE_KINDS; OS and browser are family names ("macOS", "Chrome")."""
    agent = parse(user_agent or "")
    if agent.is_bot:
        kind = "bot"
    elif agent.is_tablet:
        kind = "tablet"
    elif agent.is_mobile:
        kind = "phone"
    elif agent.is_pc:
        kind = "desktop"
    else:
        kind = "other"
    os_name = _OS_NAMES.get(agent.os.family, agent.os.family)
    browser = agent.browser.family
    return DeviceInfo(
        kind=kind,
        os="" if os_name == "Other" else os_name,
        browser=""
        if browser == "Other"
        else browser.removeprefix("Mobile ").removesuffix(" Mobile"),
    )


_OS_NAMES = {"Mac OS X": "macOS", "Chrome OS": "ChromeOS"}
