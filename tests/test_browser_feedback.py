"""Feedback on every action, in Chromium: a running action disables its controls and
shows it is busy; a failed one (an error status, or no network) is said on the page in
words with "Try again"; confirmations are asked in the page; and no page or htmx action
of a member or an admin causes a CSP violation or a console error."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from testkit.browser import browser_login, confirm_in_page, no_native_dialogs, wait_until
from testkit.rows import add_session
from testkit.values import UA_IPAD, UA_MAC_CHROME

pytestmark = pytest.mark.browser
SHOTS = Path(os.environ.get("HOLDFAST_SCREENSHOTS", "test-results/screenshots"))

#: every CSP violation a page meets, in the order met (installed before any page script)
CSP_WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample || ''}`.trim());
});
"""


def watch(page):
    """Console errors, page errors and native dialogs, as a list that grows."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    no_native_dialogs(page, problems)
    page.add_init_script(CSP_WATCH)
    return problems


def violations(page):
    return page.evaluate("window.__csp || []")


def two_browsers(browser, live_server, mailbox, email):
    desk = browser.new_context(user_agent=UA_MAC_CHROME, viewport={"width": 1200, "height": 900})
    ipad = browser.new_context(user_agent=UA_IPAD, viewport={"width": 820, "height": 1180})
    a, b = desk.new_page(), ipad.new_page()
    browser_login(a, live_server, mailbox, email)
    browser_login(b, live_server, mailbox, email)
    a.reload()
    return desk, ipad, a, b


def test_ending_a_session_shows_progress_and_says_failures_with_a_retry(
    browser, live_server, live_make, mailbox
):
    tenant = live_make.tenant("clinic")
    live_make.user("sam@clinic.test", tenant)
    desk, ipad, a, b = two_browsers(browser, live_server, mailbox, "sam@clinic.test")
    problems = []
    no_native_dialogs(a, problems)
    card = a.locator("article.device", has_text="Safari on iOS")
    end = card.get_by_role("button", name="End session on Safari on iOS")

    # While the request runs, the button is disabled and busy (the answer is held back).
    held = []
    a.route("**/sessions/*/end", lambda route: held.append(route))
    end.click()
    SHOTS.mkdir(parents=True, exist_ok=True)
    a.locator("#confirm-dialog[open]").wait_for()
    a.screenshot(path=str(SHOTS / "devices-confirm-1200.png"))
    assert "End the session on Safari on iOS?" in confirm_in_page(a)
    wait_until(a, "document.querySelector('button.end-session[aria-busy=true]') !== null")
    assert a.evaluate("document.querySelector('button.end-session[aria-busy=true]').disabled")
    assert len(held) == 1

    # The server answers with an error: said in words, the card stays, the button is back.
    held[0].fulfill(status=503, body="down for maintenance")
    error = a.locator("#action-error")
    error.wait_for(state="visible")
    text = error.inner_text()
    assert "“End session on Safari on iOS” did not go through" in text
    assert "The server had a problem" in text
    assert end.is_enabled() and end.get_attribute("aria-busy") is None
    a.unroute("**/sessions/*/end")
    error.get_by_role("button", name="Dismiss").click()
    assert error.is_hidden()

    # Offline: "Sign out all other sessions" cannot reach the server, and says so.
    desk.set_offline(True)
    a.get_by_role("button", name="Sign out all other sessions").click()
    confirm_in_page(a)
    error.wait_for(state="visible")
    assert "“Sign out all other sessions” did not go through" in error.inner_text()
    assert "could not be reached" in error.inner_text()
    a.screenshot(path=str(SHOTS / "devices-offline-1200.png"))
    assert card.is_visible()  # nothing pretends the other device was signed out
    assert a.locator("#end-others").is_enabled()

    # Back online, "Try again" sends the same request (not asking again) and it works.
    desk.set_offline(False)
    error.get_by_role("button", name="Try again").click()
    card.wait_for(state="detached")
    assert error.is_hidden()
    a.locator("#device-notice", has_text="Ended 1 other session.").wait_for()
    # No session is left to sign out: the button is gone with it.
    assert a.locator("#end-others").count() == 0
    b.goto(f"{live_server}/devices")
    b.wait_for_url("**/login**")
    assert problems == []
    desk.close()
    ipad.close()


def member_and_admin_pages(services, tenant, admin, sam):
    return [
        "/devices",
        "/account/security",
        "/account/data",
        "/admin",
        "/admin/sessions",
        f"/admin/sessions?user={sam.id}",
        "/admin/users",
        f"/admin/users/{sam.id}",
        "/admin/alerts",
        "/admin/audit",
        "/admin/policy",
        "/admin/mail",
        "/admin/reports",
        "/admin/webhooks",
        f"/admin/users/{sam.id}/erase",
        "/api/docs",
        "/no-such-page",
    ]


def test_no_csp_violation_or_console_error_on_any_page_or_action(
    browser, live_server, live_make, live_app, mailbox
):
    services = live_app.extensions["holdfast"]
    tenant = live_make.tenant("ward")
    admin = live_make.user("ada@ward.test", tenant, role="admin")
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
            browser=name,
            ip=f"192.0.2.{n + 10}",
        )
        for n, (kind, os_name, name) in enumerate(
            [
                ("phone", "iOS", "Safari"),
                ("desktop", "Windows", "Edge"),
                ("tablet", "iOS", "Safari"),
            ]
        )
    ]
    desk, ipad, a, _b = two_browsers(browser, live_server, mailbox, "ada@ward.test")
    problems = watch(a)
    seen: dict[str, list[str]] = {}
    for path in member_and_admin_pages(services, tenant, admin, sam):
        a.goto(f"{live_server}{path}")
        a.wait_for_load_state("load")
        wait_until(a, "!!window.htmx")
        seen[path] = violations(a)

    # The member's htmx actions on /devices.
    a.goto(f"{live_server}/devices")
    a.get_by_role("button", name="Trust this device").click()
    a.locator("#device-notice", has_text="This device is trusted").wait_for()
    a.locator("article.device.current summary").click()
    a.locator("article.device.current input[name=name]").fill("Work laptop")
    a.locator("article.device.current").get_by_role("button", name="Save").click()
    a.locator("article.device.current h2", has_text="Work laptop").wait_for()
    a.locator("article.device.current").get_by_role("button", name="Stop trusting").click()
    a.locator("#device-notice", has_text="no longer trusted").wait_for()
    a.get_by_role("button", name="End session on Safari on iOS").click()
    confirm_in_page(a)
    a.locator("article.device", has_text="Safari on iOS").wait_for(state="detached")
    seen["/devices (actions)"] = violations(a)

    # The admin's htmx actions in the explorer and the person's boosted forms.
    a.goto(f"{live_server}/admin/sessions?user={sam.id}")
    a.locator(f"#row-{ids[0]}").get_by_role("button", name="End the session").click()
    confirm_in_page(a)
    a.locator(f"#row-{ids[0]}.ended").wait_for()
    a.check("#select-all")
    a.click("#end-selected")
    confirm_in_page(a)
    a.locator("#explorer-notice", has_text="Ended 2 sessions.").wait_for()
    seen["/admin/sessions (actions)"] = violations(a)
    a.goto(f"{live_server}/admin/users/{sam.id}")
    a.click("#disable")
    confirm_in_page(a)
    a.locator("#disabled-badge").wait_for()
    seen["/admin/users/… (actions)"] = violations(a)

    assert {path: found for path, found in seen.items() if found} == {}
    # A 404 logs the failed load of the page itself; nothing else may be an error.
    assert [p for p in problems if "404" not in p] == []
    desk.close()
    ipad.close()
