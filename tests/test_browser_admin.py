"""The admin console in Chromium: the dashboard draws its charts (no CSP complaints), its
figures refresh by themselves, a bar opens the explorer filtered to it; and sessions are
ended from the explorer with htmx, rows changing in place."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from testkit.browser import browser_login, confirm_in_page, no_native_dialogs, wait_until
from testkit.rows import add_session, session_row
from testkit.values import UA_IPAD

pytestmark = pytest.mark.browser
SHOTS = Path(os.environ.get("HOLDFAST_SCREENSHOTS", "test-results/screenshots"))
ALL_DRAWN = """() => {
  const canvases = [...document.querySelectorAll('canvas[data-chart-url]')];
  return canvases.length === 6 && canvases.every(c => c.dataset.drawn === 'true');
}"""
PAINTED = """(canvas) => {
  const {width, height} = canvas;
  const pixels = canvas.getContext('2d').getImageData(0, 0, width, height).data;
  let painted = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
  return painted;
}"""
BAR_CENTRE = """(index) => {
  const canvas = document.querySelector('#chart-sign-ins-per-day canvas');
  const bar = canvas._chart.getDatasetMeta(0).data[index];
  const box = canvas.getBoundingClientRect();
  return {x: box.left + bar.x, y: box.top + (bar.y + bar.base) / 2};
}"""

KINDS = [
    ("desktop", "macOS", "Chrome"),
    ("desktop", "Windows", "Edge"),
    ("phone", "iOS", "Safari"),
    ("phone", "Android", "Chrome"),
    ("tablet", "iOS", "Safari"),
    ("desktop", "Linux", "Firefox"),
]


def watch_console(page):
    """Every console error and page error (a CSP violation is a console error), and every
    request that failed (by URL; the browser's own favicon guess aside)."""
    problems = []

    def on_console(message):
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(message.text)

    def on_response(response):
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            problems.append(f"{response.status} {response.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("response", on_response)
    return problems


def test_dashboard_draws_its_charts_and_refreshes_its_figures(
    browser, live_server, live_make, live_app, mailbox
):
    services = live_app.extensions["holdfast"]
    tenant = live_make.tenant("clinic")
    live_make.user("ada@clinic.test", tenant, role="admin")
    people = [live_make.user(f"nurse{n}@clinic.test", tenant) for n in range(4)]
    now = datetime.now(UTC)
    # Three weeks of sign-ins, busier in working hours, some still live.
    for day in range(21):
        for n in range(day % 5 + 2):
            kind, os_name, browser_name = KINDS[(day + n) % len(KINDS)]
            start = now - timedelta(days=day, hours=(n * 3) % 10 + 1)
            live = day == 0  # the first two nurses are signed in now
            add_session(
                services,
                tenant,
                people[n % 4],
                created=start,
                last_seen=now - timedelta(minutes=2) if live else start,
                ended=None if live else start + timedelta(minutes=10 + 37 * n),
                reason=None if live else "logout",
                kind=kind,
                os=os_name,
                browser=browser_name,
            )
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems = watch_console(page)
    browser_login(page, live_server, mailbox, "ada@clinic.test")

    page.click("header a[href='/admin']")
    page.wait_for_url(f"{live_server}/admin")
    wait_until(page, ALL_DRAWN, timeout=15)

    for canvas in page.query_selector_all("canvas[data-chart-url]"):
        assert canvas.evaluate(PAINTED) > 500, canvas.get_attribute("data-chart-url")
    live_figure = page.locator("#figure-live-sessions .figure-value")
    assert live_figure.inner_text() == "3"  # two nurses' sessions and Ada's own
    assert page.locator("#figure-people-signed-in .figure-value").inner_text() == "3"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "admin-dashboard.png"), full_page=True)

    # The figures refresh by themselves (htmx polls every 10 s), without a reload.
    page.evaluate("window.__sameDocument = true")
    add_session(
        services,
        tenant,
        people[3],
        created=datetime.now(UTC),
        last_seen=datetime.now(UTC),
        kind="tablet",
        os="iOS",
        browser="Safari",
    )
    wait_until(
        page,
        "() => document.querySelector('#figure-live-sessions .figure-value').textContent === '4'",
        timeout=20,
    )
    assert page.evaluate("window.__sameDocument") is True

    # Today's bar opens the explorer with today's sign-ins.
    point = page.evaluate(BAR_CENTRE, 29)
    page.mouse.click(point["x"], point["y"])
    today = datetime.now(UTC).date().isoformat()
    page.wait_for_url(f"**/admin/sessions?status=all&sort=signed_in&from={today}&to={today}")
    assert page.locator("tr.session-row").count() >= 1  # Ada's own sign-in, at least
    assert problems == []

    phone = browser.new_context(viewport={"width": 390, "height": 844}, user_agent=UA_IPAD)
    phone.add_cookies(context.cookies())
    small = phone.new_page()
    small.goto(f"{live_server}/admin")
    wait_until(small, ALL_DRAWN, timeout=15)
    small.screenshot(path=str(SHOTS / "admin-dashboard-phone.png"), full_page=True)
    phone.close()
    context.close()


def test_end_sessions_from_the_explorer_with_htmx(
    browser, live_server, live_make, live_app, mailbox
):
    services = live_app.extensions["holdfast"]
    tenant = live_make.tenant("ward")
    live_make.user("ada@ward.test", tenant, role="admin")
    sam = live_make.user("sam@ward.test", tenant)
    now = datetime.now(UTC)
    ids = [
        add_session(
            services,
            tenant,
            sam,
            created=now - timedelta(hours=n + 1),
            last_seen=now - timedelta(minutes=n + 1),
            kind=kind,
            os=os_name,
            browser=browser_name,
            ip=f"192.0.2.{n + 10}",
        )
        for n, (kind, os_name, browser_name) in enumerate(KINDS[:4])
    ]
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    problems = watch_console(page)
    no_native_dialogs(page, problems)
    browser_login(page, live_server, mailbox, "ada@ward.test")
    page.goto(f"{live_server}/admin/sessions?user={sam.id}")
    assert page.locator("tr.session-row.live").count() == 4
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "admin-explorer-live.png"), full_page=True)
    page.evaluate("window.__sameDocument = true")

    # End one: its row changes in place.
    first = page.locator(f"#row-{ids[0]}")
    first.get_by_role("button", name="End the session of sam@ward.test on").click()
    assert "sam@ward.test" in confirm_in_page(page)
    page.locator(f"#row-{ids[0]}.ended").wait_for()
    assert "Ended by an admin" in page.locator(f"#row-{ids[0]}").inner_text()

    # Select the rest with "select all" and end them together.
    assert page.locator("#end-selected").is_disabled()  # nothing chosen yet
    page.check("#select-all")
    assert page.locator("input.pick:checked").count() == 3
    assert page.locator("#end-selected").is_enabled()
    page.click("#end-selected")
    confirm_in_page(page)
    page.locator("#explorer-notice", has_text="Ended 3 sessions.").wait_for()
    for session_id in ids[1:]:
        page.locator(f"#row-{session_id}.ended").wait_for()
    assert page.locator("tr.session-row.live").count() == 0
    assert page.evaluate("window.__sameDocument") is True
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "admin-explorer.png"), full_page=True)

    for session_id in ids:
        assert session_row(services, session_id).end_reason == "revoked_by_admin"

    # The person's page: a boosted form asks first, then shows what it did.
    page.click(f"#row-{ids[0]} td.who a")
    page.wait_for_url(f"**/admin/users/{sam.id}")
    assert page.locator("#history-" + ids[0]).count() == 1
    page.click("#disable")
    assert "Disable sam@ward.test?" in confirm_in_page(page)
    page.locator(".notice", has_text="Disabled. 0 sessions ended").wait_for()
    assert page.locator("#disabled-badge").is_visible()
    page.screenshot(path=str(SHOTS / "admin-person.png"), full_page=True)
    page.goto(f"{live_server}/admin/audit?subject={sam.id}")
    assert page.locator("tr[id^=event-]").count() >= 5  # four endings, the disabling, ...
    page.screenshot(path=str(SHOTS / "admin-audit.png"), full_page=True)
    page.goto(f"{live_server}/admin/users")
    page.screenshot(path=str(SHOTS / "admin-people.png"), full_page=True)
    assert problems == []
    context.close()
