"""Times in the viewer's time zone: a <time> element is rewritten with the browser's Intl
in its own zone (UTC on request, remembered in the browser), and relative times refresh
as time passes."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from app.models import UserSession
from testkit.browser import browser_login, wait_until

pytestmark = pytest.mark.browser
KOLKATA = ZoneInfo("Asia/Kolkata")  # UTC+5:30 all year: no daylight saving to guess


def test_times_show_in_the_viewer_zone_refresh_and_offer_utc(
    browser, live_server, live_make, live_app, mailbox
):
    services = live_app.extensions["holdfast"]
    tenant = live_make.tenant("clinic")
    live_make.user("ravi@clinic.test", tenant)
    context = browser.new_context(timezone_id="Asia/Kolkata", locale="en-GB")
    page = context.new_page()
    page.clock.install()  # the page's own clock, moved on below (the server's is real)
    browser_login(page, live_server, mailbox, "ravi@clinic.test")
    page.get_by_role("button", name="Trust this device").click()
    page.locator("#device-notice", has_text="This device is trusted").wait_for()
    with services.session() as db:
        # the latest a session on the trusted device lasts, on its card
        until = db.scalars(select(UserSession.absolute_deadline)).one()
    local = until.astimezone(KOLKATA)
    utc = until.astimezone(ZoneInfo("UTC"))

    trusted = page.locator("article.device.current .sign-out-rule time[data-format=datetime]")
    wait_until(page, "!!document.querySelector('#time-zone:not([hidden])')")
    # the card came in by an htmx swap: its times are rewritten once the swap settles
    wait_until(
        page,
        "!(document.querySelector('article.device.current .sign-out-rule "
        "time[data-format=datetime]')?.textContent || 'UTC').includes('UTC')",
    )
    text = trusted.inner_text()
    assert local.strftime("%H:%M") in text and str(local.year) in text, text
    assert "UTC" not in text
    zone = page.locator("#time-zone").inner_text()
    assert "Asia/Kolkata" in zone or "Asia/Calcutta" in zone  # ICU may say the old name

    # A relative time refreshes by itself: "now" becomes "5 minutes ago".
    signed_in = page.locator("article.device.current time[data-format=relative]").first
    assert signed_in.inner_text() == "now"
    page.clock.run_for("05:10")
    assert signed_in.inner_text() == "5 minutes ago"

    # UTC on request, kept for the next page.
    page.locator("#time-zone button").click()
    assert utc.strftime("%H:%M") in trusted.inner_text() and "UTC" in trusted.inner_text()
    page.reload()
    wait_until(page, "!!document.querySelector('#time-zone:not([hidden])')")
    assert "UTC" in trusted.inner_text()
    assert page.locator("#time-zone button").inner_text() == "Show my time zone"
    context.close()


def test_a_browser_in_utc_is_offered_no_switch(browser, live_server, live_make, mailbox):
    """The foot of the page offers "Show UTC instead" only where there is another zone to
    leave: a browser whose own zone is UTC reads "Times in UTC." and no button."""
    tenant = live_make.tenant("ward")
    live_make.user("una@ward.test", tenant)
    context = browser.new_context(timezone_id="UTC", locale="en-GB")
    page = context.new_page()
    browser_login(page, live_server, mailbox, "una@ward.test")
    wait_until(page, "!!document.querySelector('#time-zone:not([hidden])')")
    assert page.locator("#time-zone").inner_text().strip() == "Times in UTC."
    assert page.locator("#time-zone button").is_hidden()
    context.close()
