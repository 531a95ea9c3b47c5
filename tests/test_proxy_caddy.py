"""A real Caddy (Debian's 2.6 package) in front of a small upstream app, asking Holdfast's
GET /auth/verify with forward_auth: no cookie is sent to the sign-in page (through Caddy)
and comes back signed in, the identity headers reach the upstream in place of any a client
sends, and an ended session is refused on the very next request.

The site block's contents are read from docs/api.md, so the snippet there is the one
tested; only the two upstream addresses, the site address and the temp paths are this
test's own. The browser, the echoing app and the identity header names come from the
nginx test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from app.core.sessions import end_session
from app.models import UserSession
from testkit.cluster import free_port
from testkit.proxy import (
    DOCS,
    IDENTITY_HEADERS,
    Browser,
    Echo,
    running,
    sign_in_and_come_back,
    sign_in_target,
    wait_until_listening,
)
from testkit.tools import require_tool

CADDY = "/usr/bin/caddy"

#: the addresses docs/api.md gives Holdfast and the app, swapped for the test's own
DOCUMENTED_HOLDFAST = "127.0.0.1:8000"
DOCUMENTED_APP = "127.0.0.1:9000"


def documented_snippet() -> str:
    """The site block's contents from docs/api.md, as a reader would copy them."""
    blocks = re.findall(r"```caddy\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    site = [block for block in blocks if "forward_auth" in block]
    assert len(site) == 1, "docs/api.md should hold one caddy block with forward_auth"
    assert DOCUMENTED_HOLDFAST in site[0] and DOCUMENTED_APP in site[0]
    return site[0]


# Nothing listens beyond 127.0.0.1 (no admin endpoint, no port 80 or 443 for automatic
# HTTPS), and nothing is fetched from the network.
CADDYFILE = """{{
\tadmin off
\tauto_https off
\tdefault_bind 127.0.0.1
\tgrace_period 2s
}}

http://127.0.0.1:{port} {{
{site}}}
"""


class CountingEcho(Echo):
    """The nginx test's echoing app, also noting the path of each request it answers."""

    server: AppServer

    def do_GET(self) -> None:
        self.server.reached.append(self.path)
        super().do_GET()


class AppServer(ThreadingHTTPServer):
    """The upstream app; ``reached`` lists the paths of the requests that got to it."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), CountingEcho)
        self.reached: list[str] = []


@pytest.fixture
def app_server() -> Iterator[AppServer]:
    with running(AppServer()) as server:
        yield server


@pytest.fixture
def caddy(live_server: str, app_server: AppServer, tmp_path: Path) -> Iterator[str]:
    binary = require_tool(CADDY, "the forward_auth test runs Debian's caddy")
    folder = tmp_path / "caddy"
    folder.mkdir()
    port = free_port()
    holdfast = urllib.parse.urlsplit(live_server).netloc
    site = (
        documented_snippet()
        .replace(DOCUMENTED_HOLDFAST, holdfast)
        .replace(DOCUMENTED_APP, f"127.0.0.1:{app_server.server_address[1]}")
    )
    caddyfile = folder / "Caddyfile"
    caddyfile.write_text(CADDYFILE.format(port=port, site=site))
    # Caddy keeps its autosaved config and certificate storage under these: the temp dir.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(folder),
        "XDG_CONFIG_HOME": str(folder / "config"),
        "XDG_DATA_HOME": str(folder / "data"),
    }
    log = folder / "caddy.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [binary, "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
            cwd=folder,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_listening("caddy", base, process, log)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_caddy_forward_auth_in_front_of_an_app(caddy, app_server, live_app, live_make, mailbox):
    tenant = live_make.tenant("clinic")
    user = live_make.user("sarah@clinic.test", tenant, role="admin")
    browser = Browser()

    # No cookie: Caddy sends the visitor to sign in, with the whole URI to come back to,
    # and the app is never asked.
    status, headers, _ = browser.open(f"{caddy}/app/records?id=7&view=full", follow=False)
    assert status == 302
    assert sign_in_target(headers["Location"]) == {"next": ["/app/records?id=7&view=full"]}
    assert app_server.reached == []

    # Holdfast's own pages come through Caddy: sign in there, and land back on the app.
    landed = sign_in_and_come_back(browser, caddy, headers["Location"], mailbox, user.email)
    assert landed["path"] == "/app/records?id=7&view=full"
    assert app_server.reached == ["/app/records?id=7&view=full"]

    # Signed in: the request reaches the app with this session's identity, and every
    # identity header a client sends itself is replaced.
    forged = {name: "forged" for name in IDENTITY_HEADERS}
    status, _, body = browser.open(f"{caddy}/app/records?id=8", headers=forged)
    assert status == 200, body
    seen = json.loads(body)
    received = {k.lower(): v for k, v in seen["headers"].items()}
    assert seen["path"] == "/app/records?id=8"
    session_id = received["x-holdfast-session"]
    services = live_app.extensions["holdfast"]
    with services.session() as db:
        session = db.get_one(UserSession, session_id)
        assert session.user_id == user.id and not session.is_ended
    assert received["x-holdfast-user"] == user.id
    assert received["x-holdfast-email"] == "sarah@clinic.test"
    assert received["x-holdfast-tenant"] == tenant.id
    assert received["x-holdfast-role"] == "admin"
    assert "forged" not in {received[name.lower()] for name in IDENTITY_HEADERS}
    assert all(seen["repeats"][name.lower()] == 1 for name in IDENTITY_HEADERS)  # replaced

    # The session is ended elsewhere (an admin, another device): the very next request
    # through Caddy is refused, although the browser still holds the cookie.
    with services.session(write=True) as db:
        end_session(
            db, db.get_one(UserSession, session_id), "revoked_by_admin", now=services.clock.now()
        )
        db.commit()
    assert browser.session_cookie()
    status, headers, _ = browser.open(f"{caddy}/app/records", follow=False)
    assert status == 302
    assert sign_in_target(headers["Location"]) == {
        "next": ["/app/records"],
        "reason": ["revoked_by_admin"],
    }
    assert app_server.reached == ["/app/records?id=7&view=full", "/app/records?id=8"]

    # A program gets the 401 JSON error, not a redirect it cannot follow.
    status, answer, body = browser.open(
        f"{caddy}/app/records", follow=False, headers={"Authorization": "Bearer not-a-token"}
    )
    assert status == 401, body
    assert json.loads(body)["code"] == "invalid_session"
    assert answer["WWW-Authenticate"] == 'Bearer realm="holdfast"'
    assert len(app_server.reached) == 2
