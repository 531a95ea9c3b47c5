"""Chromium through Playwright: Debian's browser and its flags, signing in through the real
pages, and waiting for the page's state from Python."""

from __future__ import annotations

import time
from typing import Any

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


def browser_login(page: Any, base_url: str, mailbox: Mailbox, email: str) -> None:
    """Sign in through the real pages in a Playwright page."""
    before = mailbox.count(email)
    page.goto(f"{base_url}/login")
    page.fill("#email", email)
    page.click("button[type=submit]")
    page.wait_for_url("**/login/code")
    page.fill("#code", mailbox.last_code(email, before + 1))
    page.click("form button[type=submit]")
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
