"""A real nginx (Debian's package) in front of a small upstream app, asking Holdfast's
GET /auth/verify with auth_request: a signed-in browser cookie passes and the identity
headers reach the upstream, an ended session is refused on the very next request, and a
refused browser goes through Holdfast's GET /auth/sign-in: to the sign-in page and back to
the very URI afterwards (a program gets the 401 JSON error instead).

The server block is read from docs/api.md, so the snippet there is the one tested; only
the upstream ports, the listen address and the temp paths are this test's own.
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

NGINX = "/usr/sbin/nginx"


def documented_snippet() -> str:
    """The server-block snippet from docs/api.md, as a reader would copy it."""
    blocks = re.findall(r"```nginx\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    site = [block for block in blocks if "auth_request" in block]
    assert len(site) == 1, "docs/api.md should hold one nginx block with auth_request"
    return site[0]


CONF = """
{user}
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_temp;
    proxy_temp_path {d}/proxy_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;
    upstream holdfast {{ server 127.0.0.1:{holdfast}; }}
    upstream upstream_app {{ server 127.0.0.1:{upstream}; }}
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
{site}
    }}
}}
"""


@pytest.fixture
def upstream() -> Iterator[int]:
    with running(ThreadingHTTPServer(("127.0.0.1", 0), Echo)) as server:
        yield server.server_address[1]


@pytest.fixture
def nginx(live_server: str, upstream: int, tmp_path: Path) -> Iterator[str]:
    binary = require_tool(NGINX, "the reverse-proxy test runs Debian's nginx")
    folder = tmp_path / "nginx"
    folder.mkdir()
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(
        CONF.format(
            user="user root;" if os.geteuid() == 0 else "",
            d=folder,
            holdfast=urllib.parse.urlsplit(live_server).port,
            upstream=upstream,
            port=port,
            site=documented_snippet(),
        )
    )
    check = subprocess.run(
        [binary, "-t", "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen(
        [binary, "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")]
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_listening("nginx", base, process, folder / "error.log")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_nginx_auth_request_in_front_of_an_app(nginx, live_app, live_make, mailbox):
    tenant = live_make.tenant("clinic")
    user = live_make.user("sarah@clinic.test", tenant)
    browser = Browser()

    # No cookie: nginx sends the visitor to sign in, with the whole URI to come back to
    # (Holdfast encodes it: put in as it came, "&view=full" would be lost).
    status, headers, _ = browser.open(f"{nginx}/app/records?id=7&view=full", follow=False)
    assert status == 302
    assert sign_in_target(headers["Location"]) == {"next": ["/app/records?id=7&view=full"]}

    # Holdfast's sign-in through nginx lands back on that page, query and all.
    landed = sign_in_and_come_back(browser, nginx, headers["Location"], mailbox, user.email)
    assert landed["path"] == "/app/records?id=7&view=full"

    # Signed in: the request reaches the upstream with the identity, and every identity
    # header a client forges is replaced.
    forged = {name: "forged" for name in IDENTITY_HEADERS}
    status, _, body = browser.open(f"{nginx}/app/records?id=7", headers=forged)
    assert status == 200, body
    seen = json.loads(body)
    received = {k.lower(): v for k, v in seen["headers"].items()}
    assert seen["path"] == "/app/records?id=7"
    assert received["x-holdfast-user"] == user.id
    assert received["x-holdfast-email"] == "sarah@clinic.test"
    assert received["x-holdfast-tenant"] == tenant.id
    assert received["x-holdfast-role"] == "member"
    session_id = received["x-holdfast-session"]
    assert session_id.startswith("sess_")
    assert "forged" not in {received[name.lower()] for name in IDENTITY_HEADERS}
    assert all(seen["repeats"][name.lower()] == 1 for name in IDENTITY_HEADERS)  # replaced

    # The session is ended elsewhere (an admin, another device): the very next request
    # through nginx is refused, although the browser still holds the cookie.
    services = live_app.extensions["holdfast"]
    with services.session(write=True) as db:
        end_session(
            db, db.get_one(UserSession, session_id), "revoked_by_admin", now=services.clock.now()
        )
        db.commit()
    assert browser.session_cookie()
    status, headers, _ = browser.open(f"{nginx}/app/records", follow=False)
    assert status == 302
    # ... and the sign-in page will say why (the check's reason, passed on by nginx).
    assert sign_in_target(headers["Location"]) == {
        "next": ["/app/records"],
        "reason": ["revoked_by_admin"],
    }
    status, _, page = browser.open(urllib.parse.urljoin(nginx, headers["Location"]))
    assert status == 200 and "An administrator signed you out." in page


def test_a_program_through_nginx_gets_the_json_error_not_a_redirect(nginx):
    """A bearer token that is refused (here: not a token at all) or a request for JSON
    gets Holdfast's 401 JSON error through nginx: a program cannot follow a sign-in page."""
    browser = Browser()
    for headers in ({"Authorization": "Bearer not-a-token"}, {"Accept": "application/json"}):
        status, answer, body = browser.open(f"{nginx}/app/records", follow=False, headers=headers)
        assert status == 401, (headers, body)
        assert json.loads(body)["code"] == "invalid_session"
        assert answer["WWW-Authenticate"] == 'Bearer realm="holdfast"'
        assert answer["Location"] is None
