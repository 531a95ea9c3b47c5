"""An app's admin page in Chromium: choosing who may use it with the search box and the
checkbox list, at 1280 and 390 px (no sideways scrolling on a phone), and removing it
through the page's own confirmation dialog, which names the app. Pictured in
docs/screenshots (run with HOLDFAST_SCREENSHOTS=docs/screenshots)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select

from app.clock import SystemClock
from app.models import OidcClient, OidcClientPerson
from testkit.browser import browser_login, confirm_in_page, no_native_dialogs
from testkit.oidc import register

pytestmark = pytest.mark.browser
SHOTS = Path(os.environ.get("HOLDFAST_SCREENSHOTS", "test-results/screenshots"))
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


def test_admin_chooses_who_may_use_an_app_and_removes_it(
    browser, live_server, live_make, live_app, mailbox
):
    services = live_app.extensions["holdfast"]
    tenant = live_make.tenant("acme")
    live_make.user("ada@acme.test", tenant, role="admin", name="Ada Admin")
    names = ["Carla Diaz", "Carl Berg", "Dana Kim", "Eli Novak", "Farah Haddad", "Gus Lund"]
    people = {
        name: live_make.user(f"{name.split()[0].lower()}@acme.test", tenant, name=name)
        for name in names
    }
    grafana = register(services, SystemClock(), name="Grafana")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    no_native_dialogs(page, problems)
    page.on("pageerror", lambda error: problems.append(str(error)))
    browser_login(page, live_server, mailbox, "ada@acme.test")

    page.goto(f"{live_server}/admin/apps")
    page.click(f"#app-{grafana.client_id} a.app-link")
    page.wait_for_url(f"**/admin/apps/{grafana.client_id}")
    assert page.locator("#who-everyone").is_checked()
    assert page.locator(".people-choice").count() == 7

    # The search box narrows the list; what is ticked stays ticked when it is cleared.
    page.fill("#people-filter", "carl")
    assert page.locator(".people-choice:visible").count() == 2
    assert page.locator("#people-count").inner_text() == "2 of 7 people shown · 0 chosen"
    page.check("#who-chosen")
    page.check(f"input[value='{people['Carla Diaz'].id}']")
    page.check(f"input[value='{people['Carl Berg'].id}']")
    assert page.locator("#people-count").inner_text() == "2 of 7 people shown · 2 chosen"
    page.fill("#people-filter", "")
    assert page.locator(".people-choice:visible").count() == 7
    assert page.locator("#people-count").inner_text() == "7 people · 2 chosen"
    page.press("#people-filter", "Enter")  # filters; never sends the form
    assert page.url.endswith(f"/admin/apps/{grafana.client_id}")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "admin-app-people-1280.png"), full_page=True)
    page.click("#save-people")
    page.locator(".notice", has_text="Saved.").wait_for()
    assert page.locator("#who-chosen").is_checked()
    with services.session() as db:
        chosen = {row.user_id for row in db.scalars(select(OidcClientPerson))}
        assert chosen == {people["Carla Diaz"].id, people["Carl Berg"].id}
        assert db.get_one(OidcClient, grafana.client_id).restricted is True

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    page.fill("#people-filter", "dana")
    assert page.locator(".people-choice:visible").count() == 1
    box = page.locator(".people-choice:visible").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    page.fill("#people-filter", "")
    page.screenshot(path=str(SHOTS / "admin-app-people-390.png"), full_page=True)

    page.click("#remove-app")
    question = confirm_in_page(page)
    assert question.startswith("Remove Grafana? Everyone signed in to it is signed out")
    page.wait_for_url(f"{live_server}/admin/apps")
    page.locator(".notice", has_text="Grafana was removed.").wait_for()
    assert page.locator(f"#app-{grafana.client_id}").count() == 0
    with services.session() as db:
        assert db.get_one(OidcClient, grafana.client_id).removed_at is not None
    assert problems == []
    context.close()
