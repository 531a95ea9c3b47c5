"""Real relying parties against a running Holdfast: Authlib's Flask client (in
tests/oidc_rp/authlib_rp.py) signs in with Chromium through Holdfast's own pages, then
refreshes, reads userinfo and revokes."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from app import create_app
from app.clock import SystemClock
from app.core import oidc_clients
from app.models import Tenant
from app.services import Services
from testkit.cluster import free_port
from testkit.mail import Mailbox, sending
from testkit.rows import Factory
from testkit.tools import require_tool
from tests.oidc_rp.authlib_rp import make_rp

SHOTS = Path(os.environ.get("HOLDFAST_SCREENSHOTS", "test-results/screenshots"))


@dataclass
class Running:
    url: str
    app: Flask
    make: Factory

    @property
    def services(self) -> Services:
        return self.app.extensions["holdfast"]  # type: ignore[no-any-return]


def serve(app: Flask, port: int) -> Iterator[None]:
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def holdfast(app_config: dict[str, Any], tmp_path: Path) -> Iterator[Running]:
    """Holdfast on the real clock, its BASE_URL the address it is served at (the
    issuer a relying party checks)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    application = create_app({**app_config, "CLOCK": None, "BASE_URL": url}, instance_path=tmp_path)
    with sending(application):
        services = application.extensions["holdfast"]
        yield from (
            Running(url, application, Factory(services, SystemClock()))  # type: ignore[arg-type]
            for _ in serve(application, port)
        )


def register(
    running: Running, tenant: Tenant, redirect_uri: str, **options: Any
) -> oidc_clients.NewClient:
    with running.services.session(write=True) as db:
        row = db.get_one(Tenant, tenant.id)
        made = oidc_clients.add_client(
            db,
            running.services.hasher,
            row,
            name="Team app",
            redirect_uris=[redirect_uri],
            now=running.services.clock.now(),
            **options,
        )
        db.commit()
        return made


def page_json(page: Any) -> dict[str, Any]:
    return json.loads(page.inner_text("body"))  # type: ignore[no-any-return]


def sign_in_through_holdfast(page: Any, mailbox: Mailbox, email: str, landing: str) -> None:
    before = mailbox.count(email)
    page.wait_for_url(lambda url: "/login?next=" in url)
    page.fill("#email", email)
    page.click("button[type=submit]")
    page.wait_for_url("**/login/code")
    page.fill("#code", mailbox.last_code(email, before + 1))
    page.click("form button[type=submit]")
    page.wait_for_url(lambda url: landing in url)


def test_authlib_flask_client_signs_in_with_chromium_refreshes_and_revokes(
    holdfast: Running, page: Any, mailbox: Mailbox
) -> None:
    rp_port = free_port()
    rp_url = f"http://127.0.0.1:{rp_port}"  # cookies differ by name (rp_session)
    acme = holdfast.make.tenant("acme")
    person = holdfast.make.user("sam@acme.test", acme)
    made = register(holdfast, acme, f"{rp_url}/callback")
    rp = make_rp(
        issuer=f"{holdfast.url}/oidc/acme",
        client_id=made.client.id,
        client_secret=made.secret,
        base_url=rp_url,
    )
    for _ in serve(rp, rp_port):
        page.goto(f"{rp_url}/login")
        sign_in_through_holdfast(page, mailbox, person.email, "/callback?")
        seen = page_json(page)
        claims = seen["id_token_claims"]
        assert seen["signed_in"] is True
        assert claims["iss"] == f"{holdfast.url}/oidc/acme"
        assert claims["sub"] == person.id and claims["sid"].startswith("sess_")
        assert claims["email"] == person.email and claims["amr"] == ["otp"]
        assert seen["userinfo"]["sub"] == person.id
        # a second sign-in of the same browser needs no pages: the Holdfast session
        page.goto(f"{rp_url}/login")
        page.wait_for_url(lambda url: "/callback?" in url)
        assert page_json(page)["id_token_claims"]["sid"] == claims["sid"]

        # The device page shows the app on this session's card.
        page.goto(f"{holdfast.url}/devices")
        app_line = page.locator(".session-app")
        assert app_line.inner_text().startswith("Team app")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "devices-apps.png"), full_page=True)

        page.goto(f"{rp_url}/refresh")
        assert page_json(page) == {"refreshed": True, "has_id_token": True}
        page.goto(f"{rp_url}/me")
        assert page_json(page)["status"] == 200

        page.goto(f"{rp_url}/revoke")
        assert page_json(page) == {"revoked": 200}
        page.goto(f"{rp_url}/me")
        assert page_json(page)["status"] == 401


NODE_RP = Path(__file__).parent / "oidc_rp" / "openid_client_rp.mjs"


def test_openid_client_node_signs_in_with_chromium_refreshes_and_revokes(
    holdfast: Running, page: Any, mailbox: Mailbox
) -> None:
    node = require_tool("node", "the openid-client relying party runs on Node")
    if not (Path(__file__).parent.parent / "node_modules" / "openid-client").exists():
        require_tool("node_modules/openid-client", "npm ci installs openid-client")
    callback_port = free_port()
    redirect_uri = f"http://127.0.0.1:{callback_port}/cb"
    acme = holdfast.make.tenant("acme")
    person = holdfast.make.user("kim@acme.test", acme)
    made = register(holdfast, acme, redirect_uri)
    assert made.secret is not None
    command = [
        node,
        str(NODE_RP),
        f"{holdfast.url}/oidc/acme",
        made.client.id,
        made.secret,
        redirect_uri,
    ]
    landed: list[str] = []

    def catch(route: Any) -> None:  # the app's callback: note where the browser went
        landed.append(route.request.url)
        route.fulfill(status=200, body="ok")

    with subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    ) as rp:
        assert rp.stdout is not None and rp.stdin is not None
        first = json.loads(rp.stdout.readline())
        assert "authorize" in first, first
        page.route(f"{redirect_uri}*", catch)
        page.goto(first["authorize"])
        sign_in_through_holdfast(page, mailbox, person.email, "/cb?")
        assert landed, "the browser never reached the app's redirect URI"
        rp.stdin.write(landed[-1] + "\n")
        rp.stdin.flush()
        result = json.loads(rp.stdout.readline())
        rp.stdin.close()
        rp.wait(timeout=30)
    assert "error" not in result, result
    claims = result["claims"]
    assert claims["iss"] == f"{holdfast.url}/oidc/acme" and claims["aud"] == made.client.id
    assert claims["sub"] == person.id and claims["sid"].startswith("sess_")
    assert result["userinfo"]["email"] == person.email
    assert result["refreshedHasIdToken"] is True
    assert result["introspection"]["active"] is True
    assert result["introspection"]["sid"] == claims["sid"]
    assert result["oldRefreshRefused"] is True
    # the replayed refresh token ended the sign-in; revoking it again changes nothing
    assert result["afterRevoke"] == {"active": False}
