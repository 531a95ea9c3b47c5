"""Pieces of the reverse-proxy tests (nginx, Caddy in front of an app, asking Holdfast's
GET /auth/verify): the documented snippets' page, an upstream that echoes what it got,
and a browser over urllib that signs in on the page the proxy redirected to."""

from __future__ import annotations

import http.cookiejar
import json
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest

from testkit.cluster import ROOT, JsonHandler
from testkit.values import UA_MAC_CHROME
from testkit.web import csrf_from

Server = TypeVar("Server", bound=ThreadingHTTPServer)

#: the page whose proxy snippets (nginx, Caddy) the proxy tests run as they are
DOCS = ROOT / "docs" / "api.md"

#: what GET /auth/verify answers a live session with (app/web/proxy.py)
IDENTITY_HEADERS = (
    "X-Holdfast-User",
    "X-Holdfast-Email",
    "X-Holdfast-Tenant",
    "X-Holdfast-Session",
    "X-Holdfast-Role",
)


class Echo(JsonHandler):
    """The upstream app: answers with the path and the headers it received, as JSON."""

    def do_GET(self) -> None:
        headers = dict(self.headers.items())  # a repeated header: its last value
        repeats = {name.lower(): len(self.headers.get_all(name) or []) for name in headers}
        self.send_json({"path": self.path, "headers": headers, "repeats": repeats})


@contextmanager
def running(server: Server) -> Iterator[Server]:
    """``server`` answering from a thread for the length of the block, then shut down."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def wait_until_listening(name: str, base: str, process: subprocess.Popen, log: Path) -> None:
    """Until the proxy at ``base`` answers Holdfast's /login; a failure shows its log."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{name} exited: " + log.read_text())
        try:
            urllib.request.urlopen(f"{base}/login", timeout=1).close()  # noqa: S310
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.05)
    pytest.fail(f"{name} did not start listening: " + log.read_text())


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


class Browser:
    """Cookies and a user agent over urllib, like a browser without JavaScript."""

    def __init__(self) -> None:
        self.jar = http.cookiejar.CookieJar()
        cookies = urllib.request.HTTPCookieProcessor(self.jar)
        self.following = urllib.request.build_opener(cookies)
        self.staying = urllib.request.build_opener(cookies, NoRedirect())

    def open(
        self,
        url: str,
        data: dict[str, str] | None = None,
        *,
        follow: bool = True,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, str]:
        encoded = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(  # noqa: S310 (http to the test's own nginx)
            url, data=encoded, headers={"User-Agent": UA_MAC_CHROME, **(headers or {})}
        )
        opener = self.following if follow else self.staying
        try:
            with opener.open(request, timeout=10) as answer:
                return answer.status, answer.headers, answer.read().decode()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.headers, error.read().decode()

    def session_cookie(self) -> str | None:
        return next((c.value for c in self.jar if c.name == "holdfast_session"), None)


def sign_in_target(location: str) -> dict[str, list[str]]:
    """The query of a redirect to Holdfast's sign-in page (``/login?...``), decoded."""
    parts = urllib.parse.urlsplit(location)
    assert parts.path == "/login", location
    return urllib.parse.parse_qs(parts.query)


def sign_in_and_come_back(
    browser: Browser, base: str, location: str, mailbox: Any, email: str
) -> Any:
    """Sign in on the page the proxy redirected to (``location``, through the proxy at
    ``base``) and return what the protected app then answered (the echo's JSON)."""
    sign_in = urllib.parse.urljoin(base, location)
    status, _, page = browser.open(sign_in)
    assert status == 200 and 'name="email"' in page
    status, _, page = browser.open(sign_in, {"email": email, "csrf_token": csrf_from(page)})
    assert status == 200 and "code" in page.lower()
    code = {"code": mailbox.last_code(email), "csrf_token": csrf_from(page)}
    status, _, body = browser.open(f"{base}/login/code", code)
    assert status == 200, body
    assert browser.session_cookie()
    return json.loads(body)
