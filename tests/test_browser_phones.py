"""Every member and admin page fits a phone: at 360 and 390 px wide nothing runs past
the edge (tables become stacked rows, filters fold away), so no page scrolls sideways."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.core import alerts
from app.core.sessions import idle_timeout
from app.models import Device, Tenant, UserSession
from testkit.browser import admin_pages, browser_login, member_and_admin_pages, wait_until
from testkit.rows import add_session
from testkit.values import UA_IPAD

pytestmark = pytest.mark.browser
SHOTS = Path(os.environ.get("HOLDFAST_SCREENSHOTS", "test-results/screenshots"))

#: what runs past the right edge: the widest elements, to say which one broke a page
OVERFLOW = """() => {
  const width = window.innerWidth;
  return [...document.querySelectorAll('body *')]
    .filter((e) => e.getBoundingClientRect().right > width + 0.5 && e.getClientRects().length)
    .filter((e) => !e.closest('.visually-hidden, dialog:not([open]), [hidden]'))
    .slice(0, 5)
    .map((e) => `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}.${[...e.classList].join('.')} `
                + `${Math.round(e.getBoundingClientRect().right)}`);
}"""


#: the pages pictured in docs/screenshots (HOLDFAST_SCREENSHOTS=docs/screenshots)
PICTURED = {
    "/devices": "devices",
    "/admin/sessions": "admin-sessions",
    "/admin/users": "admin-people",
    "/admin/alerts": "admin-alerts",
    "/no-such-page": "error-404",
}


def policy_idle_deadline(services, session_id: str, now: datetime) -> None:
    """Give a session made as rows the idle deadline a real one would have (a trusted
    device's longer idle timeout included, app.core.sessions.idle_timeout)."""
    with services.session(write=True) as db:
        row = db.get_one(UserSession, session_id)
        device = db.get_one(Device, row.device_id)
        row.idle_deadline = row.last_seen_at + idle_timeout(
            db.get_one(Tenant, row.tenant_id), device, now
        )
        db.commit()


def test_every_page_fits_a_phone(browser, live_server, live_make, live_app, mailbox):
    services = live_app.extensions["holdfast"]
    tenant = live_make.tenant("ward")
    ada = live_make.user("ada.longname-of-the-admin@ward.test", tenant, role="admin")
    sam = live_make.user("samantha.example-person@ward.test", tenant)
    now = datetime.now(UTC)
    # the admin's own other devices (one of them trusted): the devices picture
    for n, (kind, os_name, name) in enumerate(
        [("phone", "Android", "Chrome"), ("desktop", "macOS", "Firefox")]
    ):
        own = add_session(
            services,
            tenant,
            ada,
            created=now - timedelta(hours=2 * n + 1),
            last_seen=now - timedelta(minutes=3 * n + 2),
            kind=kind,
            os=os_name,
            browser=name,
            device_name="Work laptop" if n else None,
            trusted_until=now + timedelta(days=25) if n else None,
            ip=f"198.51.100.{20 + n}",
            location="Lisbon, PT",
        )
        policy_idle_deadline(services, own, now)
    for n, (kind, os_name, name) in enumerate(
        [("phone", "iOS", "Safari"), ("desktop", "Windows", "Edge"), ("tablet", "iPadOS", "Safari")]
    ):
        add_session(
            services,
            tenant,
            sam,
            created=now - timedelta(hours=n + 1),
            last_seen=now - timedelta(minutes=n + 1),
            ended=now - timedelta(minutes=5) if n == 2 else None,
            reason="revoked_by_admin" if n == 2 else None,
            kind=kind,
            os=os_name,
            browser=name,
            device_name="Samantha's very long device name here" if n == 1 else None,
            ip=f"2001:db8:85a3::8a2e:370:{7334 + n}",
            location="Lisbon, PT",
        )
    with services.session(write=True) as db:  # an alert row, with its two buttons
        alerts.raise_alert(
            db,
            "code_burst",
            "high",
            tenant_id=tenant.id,
            now=now,
            summary="Eleven wrong codes for samantha.example-person@ward.test in ten minutes",
            user_id=sam.id,
        )
        db.commit()
    context = browser.new_context(user_agent=UA_IPAD, viewport={"width": 390, "height": 844})
    page = context.new_page()
    browser_login(page, live_server, mailbox, "ada.longname-of-the-admin@ward.test")
    too_wide = {}
    SHOTS.mkdir(parents=True, exist_ok=True)
    for path in member_and_admin_pages(sam.id):
        for width in (360, 390):
            page.set_viewport_size({"width": width, "height": 844})
            page.goto(f"{live_server}{path}")
            wait_until(page, "document.readyState === 'complete'")
            scroll = page.evaluate("document.documentElement.scrollWidth")
            inner = page.evaluate("window.innerWidth")
            if scroll > inner:
                too_wide[f"{path} @{width}"] = (scroll, page.evaluate(OVERFLOW))
            if width == 390 and path in PICTURED:
                page.screenshot(path=str(SHOTS / f"{PICTURED[path]}-390.png"), full_page=True)
        if path in PICTURED:
            page.set_viewport_size({"width": 1280, "height": 900})
            page.goto(f"{live_server}{path}")
            wait_until(page, "document.readyState === 'complete'")
            page.screenshot(path=str(SHOTS / f"{PICTURED[path]}-1280.png"), full_page=True)
            if page.evaluate("document.documentElement.scrollWidth > window.innerWidth"):
                too_wide[f"{path} @1280"] = (0, page.evaluate(OVERFLOW))
    context.close()
    # German words are longer: the admin console in German fits too (and is pictured).
    german = browser.new_context(
        user_agent=UA_IPAD, viewport={"width": 390, "height": 844}, locale="de-DE"
    )
    page = german.new_page()
    browser_login(page, live_server, mailbox, "ada.longname-of-the-admin@ward.test")
    for path in admin_pages(sam.id):
        for width in (360, 390, 1280):
            page.set_viewport_size({"width": width, "height": 844})
            page.goto(f"{live_server}{path}")
            wait_until(page, "document.readyState === 'complete'")
            assert page.evaluate("document.documentElement.lang") == "de", path
            if page.evaluate("document.documentElement.scrollWidth > window.innerWidth"):
                too_wide[f"{path} @{width} (de)"] = (0, page.evaluate(OVERFLOW))
            if path == "/admin/users" and width in (390, 1280):
                page.screenshot(path=str(SHOTS / f"admin-de-{width}.png"), full_page=True)
    german.close()
    assert not too_wide, "\n".join(f"{where}: {what}" for where, what in too_wide.items())


def test_the_devices_page_in_german_fits_a_phone(
    browser, live_server, live_make, live_app, mailbox
):
    """German words are longer: the devices page of a person whose browser asks for German
    (several devices, one trusted, one signed out) fits 360 and 390 px, says no English,
    and is pictured at 390 px (docs/screenshots/devices-de-390.png)."""
    services = live_app.extensions["holdfast"]
    tenant = live_make.tenant("klinik")
    live_make.user("sam@klinik.test", tenant)
    sam = live_make.user("samantha.beispielperson@klinik.test", tenant)
    now = datetime.now(UTC)
    for n, (kind, os_name, name) in enumerate(
        [
            ("phone", "Android", "Chrome"),
            ("desktop", "Windows", "Edge"),
            ("tablet", "iPadOS", "Safari"),
        ]
    ):
        made = add_session(
            services,
            tenant,
            sam,
            created=now - timedelta(hours=n + 1),
            last_seen=now - timedelta(minutes=n + 1),
            ended=now - timedelta(minutes=5) if n == 2 else None,
            reason="revoked_by_user" if n == 2 else None,
            trusted_until=now + timedelta(days=20) if n == 1 else None,
            kind=kind,
            os=os_name,
            browser=name,
            device_name="Samanthas Arbeitsrechner im Büro" if n == 1 else None,
            ip=f"2001:db8:85a3::8a2e:370:{7334 + n}",
            location="Berlin, DE",
        )
        policy_idle_deadline(services, made, now)
    context = browser.new_context(
        user_agent=UA_IPAD, viewport={"width": 390, "height": 844}, locale="de-DE"
    )
    page = context.new_page()
    browser_login(page, live_server, mailbox, "samantha.beispielperson@klinik.test")
    for width in (360, 390):
        page.set_viewport_size({"width": width, "height": 844})
        page.goto(f"{live_server}/devices")
        wait_until(page, "document.readyState === 'complete'")
        assert page.evaluate("document.documentElement.lang") == "de"
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
            page.evaluate(OVERFLOW)
        )
    text = page.locator("main").inner_text()
    assert "Ihre Geräte" in text and "Dieses Gerät" in text
    assert "Chrome auf Android" in text  # a device with no name of its own, in German
    assert "Your devices" not in text and "Sign out" not in text and " ago" not in text
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "devices-de-390.png"), full_page=True)
    context.close()
