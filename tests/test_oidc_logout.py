"""RP-initiated logout: the end_session_endpoint asks the person, ends the Holdfast
session (its apps get back-channel logout tokens), and returns only to a post-logout
URI the app registered exactly."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from app.clock import FrozenClock
from app.models import OidcLogoutDelivery, UserSession
from app.services import Services
from testkit.oidc import Registered, refresh, register, sign_in_app
from testkit.web import session_id_of

AFTER = "https://app.example/signed-out"


@pytest.fixture
def app_reg(services: Services, clock: FrozenClock, tenant: Any) -> Registered:
    return register(
        services,
        clock,
        post_logout_redirect_uris=[AFTER],
        backchannel_logout_uri="https://app.example/bcl",
    )


def logout_url(**params: str) -> str:
    return f"/oidc/acme/logout?{urlencode(params)}"


def refresh_target(page: Any) -> str:
    found = re.search(r'http-equiv="refresh" content="0;url=([^"]+)"', page.text)
    assert found, page.text
    return html.unescape(found.group(1))


def test_logout_with_id_token_hint_confirms_ends_the_session_and_returns(
    signed_in: FlaskClient,
    app_reg: Registered,
    services: Services,
    clock: FrozenClock,
) -> None:
    tokens = sign_in_app(signed_in, app_reg)
    session_id = session_id_of(signed_in, services, clock)
    url = logout_url(id_token_hint=tokens["id_token"], post_logout_redirect_uri=AFTER, state="s-1")
    page = signed_in.get(url)
    assert page.status_code == 200 and 'id="confirm-logout"' in page.text
    with services.session() as db:
        assert db.get_one(UserSession, session_id).ended_at is None  # a GET ends nothing
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
    form = {name: html.unescape(value) for name, value in form.items()}
    answer = signed_in.post("/oidc/acme/logout", data=form)
    assert answer.status_code == 200
    assert refresh_target(answer) == f"{AFTER}?state=s-1"
    assert refresh(signed_in, app_reg, tokens["refresh_token"]).status_code == 400
    with services.session() as db:
        assert db.get_one(UserSession, session_id).end_reason == "logout"
        assert db.scalar(select(OidcLogoutDelivery)).session_id == session_id
    assert signed_in.get("/devices").status_code == 302  # signed out of Holdfast too


def test_logout_without_csrf_ends_nothing(
    signed_in: FlaskClient, app_reg: Registered, services: Services, clock: FrozenClock, db: Any
) -> None:
    session_id = session_id_of(signed_in, services, clock)
    answer = signed_in.post(
        "/oidc/acme/logout",
        data={"client_id": app_reg.client_id, "post_logout_redirect_uri": AFTER},
    )
    assert answer.status_code == 400
    assert db.get(UserSession, session_id).ended_at is None


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        AFTER + "/more",
        AFTER + "?next=https://evil.example",
        "https://app.example/callback",  # a redirect URI is not a post-logout URI
    ],
)
def test_post_logout_uri_must_be_registered_exactly(
    signed_in: FlaskClient, app_reg: Registered, target: str
) -> None:
    page = signed_in.get(logout_url(client_id=app_reg.client_id, post_logout_redirect_uri=target))
    assert page.status_code == 400 and "Location" not in page.headers
    assert "refresh" not in page.text


def test_post_logout_uri_without_naming_the_app_is_refused(
    signed_in: FlaskClient, tenant: Any
) -> None:
    page = signed_in.get(logout_url(post_logout_redirect_uri=AFTER))
    assert page.status_code == 400


def test_a_hint_from_another_issuer_is_refused(
    signed_in: FlaskClient, app_reg: Registered, make: Any
) -> None:
    tokens = sign_in_app(signed_in, app_reg)
    make.tenant("other")
    page = signed_in.get("/oidc/other/logout?" + urlencode({"id_token_hint": tokens["id_token"]}))
    assert page.status_code == 400
    assert signed_in.get("/oidc/acme/logout?id_token_hint=abc.def.ghi").status_code == 400


def test_without_a_session_it_goes_straight_back(client: FlaskClient, app_reg: Registered) -> None:
    page = client.get(
        logout_url(client_id=app_reg.client_id, post_logout_redirect_uri=AFTER, state="x")
    )
    assert page.status_code == 200 and refresh_target(page) == f"{AFTER}?state=x"
    plain = client.get(logout_url())
    assert plain.status_code == 302 and "/login" in plain.location


def test_discovery_lists_the_logout_endpoints(client: FlaskClient, tenant: Any) -> None:
    meta = client.get("/oidc/acme/.well-known/openid-configuration").json
    assert meta["end_session_endpoint"] == "http://localhost/oidc/acme/logout"
    assert meta["backchannel_logout_supported"] is True
    assert meta["backchannel_logout_session_supported"] is True
