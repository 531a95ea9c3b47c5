"""Chromium through Playwright: Debian's browser and its flags, signing in through the real
pages, and waiting for the page's state from Python."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from werkzeug.serving import make_server

from testkit.mail import Mailbox

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def member_and_admin_pages(person_id: str) -> list[str]:
    """Every member and admin page, once each (with a person's id where the page needs
    one), plus the states worth seeing: a filter error, the 404 page. The axe check and
    the phone-width check both walk this list, so a new page is added here once."""
    return [
        *MEMBER_PAGES,
        *admin_pages(person_id),
        "/api/docs",
        "/no-such-page",
    ]


#: the pages of a signed-in member
MEMBER_PAGES = ("/devices", "/account/security", "/account/data")


def admin_pages(person_id: str) -> list[str]:
    """The admin console's pages (see :func:`member_and_admin_pages`)."""
    return [
        "/admin",
        "/admin/sessions",
        "/admin/sessions?status=all",
        f"/admin/sessions?user={person_id}",
        "/admin/users",
        f"/admin/users/{person_id}",
        f"/admin/users/{person_id}/erase",
        "/admin/alerts",
        "/admin/audit",
        "/admin/audit?kind=nonsense&from=never",  # a filter error on the page
        "/admin/policy",
        "/admin/apps",
        "/admin/mail",
        "/admin/reports",
        "/admin/webhooks",
    ]


@contextmanager
def served(app: Flask) -> Iterator[str]:
    """The app served on 127.0.0.1 (a free port) from a thread, for a browser: yields its
    base URL and stops the server when the block ends."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


def enter_emailed_code(
    page: Any, base_url: str, mailbox: Mailbox, email: str, path: str = "/login"
) -> None:
    """Ask for a code on the sign-in page at ``path`` and enter the emailed one; the page
    then goes wherever the sign-in leads (the devices page, or a second step)."""
    before = mailbox.count(email)
    page.goto(f"{base_url}{path}")
    page.fill("#email", email)
    page.click("button[type=submit]")
    page.wait_for_url("**/login/code")
    page.fill("#code", mailbox.last_code(email, before + 1))
    page.click("form button[type=submit]")


def browser_login(page: Any, base_url: str, mailbox: Mailbox, email: str) -> None:
    """Sign in through the real pages in a Playwright page, landing on the devices page."""
    enter_emailed_code(page, base_url, mailbox, email)
    page.wait_for_url("**/devices")


def wait_until(page: Any, expression: str, timeout: float = 15.0) -> None:
    """Poll a JavaScript expression from Python until it is truthy. Playwright's own
    wait_for_function evaluates a string inside the page, which the CSP (no
    'unsafe-eval') may refuse; page.evaluate goes through the debugger and is not."""
    deadline = time.monotonic() + timeout
    while True:
        if page.evaluate(expression):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {expression}")
        time.sleep(0.1)


def confirm_in_page(page: Any) -> str:
    """Answer the page's own confirmation (the <dialog> static/js/actions.js opens for
    hx-confirm, never window.confirm) with its confirming button; the question asked."""
    dialog = page.locator("#confirm-dialog[open]")
    dialog.wait_for()
    question = str(dialog.locator(".confirm-question").inner_text())
    dialog.locator("[data-confirm]").click()
    page.locator("#confirm-dialog:not([open])").wait_for(state="attached")
    return question


def no_native_dialogs(page: Any, problems: list[str]) -> None:
    """A native alert/confirm is a failure: it is dismissed and noted in ``problems``."""

    def refuse(dialog: Any) -> None:
        problems.append(f"native {dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", refuse)
