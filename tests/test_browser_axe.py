"""Accessibility, checked by axe-core (npm, node_modules/axe-core) in Chromium: every
member and admin page, signed out and signed in, in the light and the dark colour scheme,
has no axe violation at all (WCAG 2.x A and AA rules and axe's best practices)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.core import alerts
from testkit.browser import member_and_admin_pages, wait_until
from testkit.rows import add_session
from testkit.tools import require_tool
from testkit.values import UA_MAC_CHROME

pytestmark = pytest.mark.browser
AXE = Path(__file__).parent.parent / "node_modules" / "axe-core" / "axe.min.js"
SCHEMES = ("light", "dark")

#: axe's answer cut down to what a failure message needs: rule, impact, where, why
RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.map((v) => ({
    rule: v.id,
    impact: v.impact,
    nodes: v.nodes.slice(0, 4).map((n) => `${n.target.join(' ')}: ${n.failureSummary
      .replace(/\\s+/g, ' ').slice(0, 220)}`),
  }));
}"""


def axe_path() -> Path:
    if not AXE.exists():
        require_tool(str(AXE), "npm ci installs axe-core (package.json devDependencies)")
    return AXE


def check(page, url: str, found: dict[str, list[dict]], label: str | None = None) -> None:
    """Load ``url`` in each colour scheme, run axe over it, and note its violations."""
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        page.goto(url)
        page.wait_for_load_state("load")
        audit(page, found, f"{label or url} ({scheme})")


def audit(page, found: dict[str, list[dict]], where: str) -> None:
    """Run axe over the page as it is now; its violations are noted under ``where``."""
    if not page.evaluate("!!window.axe"):
        page.add_script_tag(path=str(axe_path()))
    violations = page.evaluate(RUN_AXE)
    if violations:
        found[where] = violations


def test_no_axe_violation_on_any_page_in_either_colour_scheme(
    browser, live_server, live_make, live_app, mailbox
):
    axe_path()
    services = live_app.extensions["holdfast"]
    tenant = live_make.tenant("ward")
    ada = live_make.user("ada@ward.test", tenant, role="admin", name="Ada Lovelace")
    sam = live_make.user("sam@ward.test", tenant, name="Sam")
    now = datetime.now(UTC)
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
            ip=f"192.0.2.{n + 10}",
            location="Lisbon, PT",
        )
    with services.session(write=True) as db:  # open alerts of each severity, with buttons
        for severity in ("high", "medium", "low"):
            for user in (sam, ada):  # on the admin's own security page too
                alerts.raise_alert(
                    db,
                    "code_burst",
                    severity,
                    tenant_id=tenant.id,
                    now=now,
                    summary=f"Wrong codes for {user.email} ({severity})",
                    user_id=user.id,
                )
        db.commit()
    found: dict[str, list[dict]] = {}
    # bypass_csp: the pages' CSP rightly refuses a script injected from outside.
    context = browser.new_context(
        user_agent=UA_MAC_CHROME, viewport={"width": 1280, "height": 900}, bypass_csp=True
    )
    page = context.new_page()

    # Signed out: the sign-in pages, and the code page with a wrong-shaped code's message.
    check(page, f"{live_server}/login", found)
    page.fill("#email", "ada@ward.test")
    page.click("button[type=submit]")
    page.wait_for_url("**/login/code")
    check(page, f"{live_server}/login/code", found)
    page.fill("#code", "12")
    page.click("form button[type=submit]")
    page.locator("#code").wait_for()
    audit(page, found, "/login/code, a slip (dark)")
    page.fill("#code", mailbox.last_code("ada@ward.test"))
    page.click("form button[type=submit]")
    page.wait_for_url("**/devices")
    for path in member_and_admin_pages(sam.id):
        check(page, f"{live_server}{path}", found)

    # The page's own confirmation dialog, open, in both schemes.
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        page.goto(f"{live_server}/admin/sessions?user={sam.id}")
        wait_until(page, "!!window.htmx")
        page.get_by_role("button", name="End the session of sam@ward.test on Safari on iOS").click()
        page.locator("#confirm-dialog[open]").wait_for()
        audit(page, found, f"/admin/sessions, confirming ({scheme})")
    context.close()

    assert found == {}, "\n".join(
        f"{where}: {v['rule']} ({v['impact']})\n    " + "\n    ".join(v["nodes"])
        for where, violations in found.items()
        for v in violations
    )
