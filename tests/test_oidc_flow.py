"""Holdfast as an OpenID Provider: the code flow with PKCE, tokens, userinfo, and the
negative cases of OIDC Core, RFC 6749, RFC 7636 and RFC 9700, on the Flask test client
and the frozen clock. ID tokens are validated with joserfc against the issuer's JWKS."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from app.clock import FrozenClock
from app.models import Event, OidcGrant, OidcToken, Tenant, User
from app.services import Services
from testkit.mail import Mailbox
from testkit.oidc import (
    ISSUER,
    REDIRECT,
    Registered,
    authorize,
    basic,
    code_from,
    exchange,
    id_claims,
    pkce,
    register,
)
from testkit.rows import Factory
from testkit.web import login, session_id_of


@pytest.fixture
def app_reg(services: Services, clock: FrozenClock, tenant: Tenant) -> Registered:
    return register(services, clock)


def test_discovery_names_the_tenant_issuer_and_its_endpoints(
    client: FlaskClient, tenant: Tenant
) -> None:
    meta = client.get("/oidc/acme/.well-known/openid-configuration").json
    assert meta["issuer"] == ISSUER
    assert meta["authorization_endpoint"] == f"{ISSUER}/authorize"
    assert meta["token_endpoint"] == f"{ISSUER}/token"
    assert meta["jwks_uri"] == f"{ISSUER}/jwks"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["id_token_signing_alg_values_supported"] == ["ES256"]
    # The JWKS is Holdfast's own key ring.
    assert client.get("/oidc/acme/jwks").json == client.get("/.well-known/jwks.json").json
    assert client.get("/oidc/nobody/.well-known/openid-configuration").status_code == 404


def test_code_flow_with_pkce_gives_an_id_token_about_the_session(
    signed_in: FlaskClient,
    app_reg: Registered,
    services: Services,
    clock: FrozenClock,
    member: User,
    db: Any,
) -> None:
    verifier, challenge = pkce()
    code = code_from(
        authorize(
            signed_in,
            app_reg,
            code_challenge=challenge,
            code_challenge_method="S256",
            nonce="n-456",
        )
    )
    answer = exchange(signed_in, app_reg, code, verifier)
    assert answer.status_code == 200, answer.text
    tokens = answer.json
    assert tokens["token_type"].lower() == "bearer" and tokens["refresh_token"]
    claims = id_claims(signed_in, tokens["id_token"], clock, app_reg)
    session_id = session_id_of(signed_in, services, clock)
    assert claims["sub"] == member.id
    assert claims["sid"] == session_id
    assert claims["nonce"] == "n-456"
    assert claims["auth_time"] == int(clock.now().timestamp())
    assert claims["amr"] == ["otp"] and "acr" not in claims
    assert claims["email"] == member.email and claims["email_verified"] is True
    # userinfo answers for the access token
    info = signed_in.get(
        "/oidc/acme/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert (
        info.status_code == 200
        and info.json["sub"] == member.id
        and info.json["email"] == member.email
    )
    # stored: a grant on the session, tokens as hashes only, an audit event
    grant = db.scalar(select(OidcGrant))
    assert grant.session_id == session_id and grant.client_id == app_reg.client_id
    token_row = db.scalar(select(OidcToken))
    assert tokens["access_token"] not in (token_row.access_hash, token_row.refresh_hash)
    event = db.scalar(select(Event).where(Event.kind == "oidc.signed_in"))
    assert event.session_id == session_id and event.details["client_id"] == app_reg.client_id


def test_client_secret_post_works_and_a_wrong_secret_does_not(
    signed_in: FlaskClient, app_reg: Registered
) -> None:
    verifier, challenge = pkce()
    code = code_from(
        authorize(signed_in, app_reg, code_challenge=challenge, code_challenge_method="S256")
    )
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        "client_id": app_reg.client_id,
        "client_secret": "hfcs_wrong",
    }
    wrong = signed_in.post("/oidc/acme/token", data=data)
    assert wrong.status_code == 401 and wrong.json["error"] == "invalid_client"
    data["client_secret"] = app_reg.secret
    right = signed_in.post("/oidc/acme/token", data=data)
    assert right.status_code == 200 and right.json["id_token"]


def test_confidential_client_without_pkce_is_accepted(
    signed_in: FlaskClient, app_reg: Registered
) -> None:
    code = code_from(authorize(signed_in, app_reg))
    assert exchange(signed_in, app_reg, code, None).status_code == 200


def test_not_signed_in_goes_to_the_sign_in_page_and_back(
    client: FlaskClient, app_reg: Registered, mailbox: Mailbox, member: User
) -> None:
    first = authorize(client, app_reg)
    assert first.status_code == 302 and first.location.startswith("/login?next=")
    back_to = parse_qs(urlsplit(first.location).query)["next"][0]
    assert back_to.startswith("/oidc/acme/authorize?")
    signed = login(client, mailbox, member.email)
    assert signed.status_code == 302
    assert back_to.endswith("&hf_signed_in=1")
    # Straight after the sign-in form, the answer is a page that refreshes to the app
    # (a redirect would be held to the sign-in page's CSP form-action 'self').
    page = client.get(back_to)
    assert page.status_code == 200
    found = re.search(r'http-equiv="refresh" content="0;url=([^"]+)"', page.text)
    assert found
    target = html.unescape(found.group(1))
    assert target.startswith(REDIRECT + "?code=")
    assert parse_qs(urlsplit(target).query)["state"] == ["st-123"]


def test_prompt_none_without_a_session_answers_login_required(
    client: FlaskClient, app_reg: Registered
) -> None:
    answer = authorize(client, app_reg, prompt="none")
    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer.location).query)
    assert query["error"] == ["login_required"] and query["state"] == ["st-123"]
    assert answer.location.startswith(REDIRECT)


def test_prompt_login_and_max_age_ask_for_a_fresh_sign_in(
    signed_in: FlaskClient, app_reg: Registered, clock: FrozenClock
) -> None:
    again = authorize(signed_in, app_reg, prompt="login")
    assert again.status_code == 302 and again.location.startswith("/login/again?next=")
    clock.advance(minutes=5)
    assert authorize(signed_in, app_reg, max_age="600").status_code == 302
    code_from(authorize(signed_in, app_reg, max_age="600"))
    old = authorize(signed_in, app_reg, max_age="60")
    assert old.location.startswith("/login/again?next=")
    # prompt=none with a sign-in too old: login_required, never a page
    none = authorize(signed_in, app_reg, max_age="60", prompt="none")
    assert parse_qs(urlsplit(none.location).query)["error"] == ["login_required"]


def test_wrong_redirect_uri_is_never_followed(signed_in: FlaskClient, app_reg: Registered) -> None:
    for uri in (
        "https://evil.example/callback",
        REDIRECT + "/more",
        REDIRECT + "?x=1",
        "https://app.example/",
    ):
        answer = authorize(signed_in, app_reg, redirect_uri=uri)
        assert answer.status_code == 400, uri
        assert "Location" not in answer.headers


def test_unknown_client_and_another_tenants_client_are_refused(
    signed_in: FlaskClient, services: Services, clock: FrozenClock, make: Factory
) -> None:
    make.tenant("other")
    theirs = register(services, clock, slug="other")
    answer = authorize(signed_in, theirs)  # at acme's issuer
    assert answer.status_code == 400 and "Location" not in answer.headers
    assert authorize(signed_in, Registered("app_nope", None)).status_code == 400


def test_code_of_another_tenants_issuer_does_not_work_at_this_one(
    signed_in: FlaskClient,
    app_reg: Registered,
    services: Services,
    clock: FrozenClock,
    make: Factory,
) -> None:
    make.tenant("other")
    code = code_from(authorize(signed_in, app_reg))
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    answer = signed_in.post("/oidc/other/token", data=data, headers=basic(app_reg))
    assert answer.status_code == 401 and answer.json["error"] == "invalid_client"


def test_pkce_missing_or_wrong_verifier_is_refused(
    signed_in: FlaskClient, app_reg: Registered
) -> None:
    _verifier, challenge = pkce()
    code = code_from(
        authorize(signed_in, app_reg, code_challenge=challenge, code_challenge_method="S256")
    )
    missing = exchange(signed_in, app_reg, code, None)
    assert missing.status_code == 400 and missing.json["error"] == "invalid_request"
    code = code_from(
        authorize(signed_in, app_reg, code_challenge=challenge, code_challenge_method="S256")
    )
    wrong = exchange(signed_in, app_reg, code, pkce()[0])
    assert wrong.status_code == 400 and wrong.json["error"] == "invalid_grant"


def test_plain_pkce_is_refused(signed_in: FlaskClient, app_reg: Registered) -> None:
    verifier, _challenge = pkce()
    answer = authorize(signed_in, app_reg, code_challenge=verifier, code_challenge_method="plain")
    query = parse_qs(urlsplit(answer.location).query)
    assert query["error"] == ["invalid_request"]
    no_method = authorize(signed_in, app_reg, code_challenge=pkce()[1])
    assert parse_qs(urlsplit(no_method.location).query)["error"] == ["invalid_request"]


def test_public_client_must_use_pkce(
    signed_in: FlaskClient, services: Services, clock: FrozenClock, tenant: Tenant
) -> None:
    public = register(services, clock, public=True)
    assert public.secret is None
    refused = authorize(signed_in, public)
    assert parse_qs(urlsplit(refused.location).query)["error"] == ["invalid_request"]
    verifier, challenge = pkce()
    code = code_from(
        authorize(signed_in, public, code_challenge=challenge, code_challenge_method="S256")
    )
    answer = exchange(signed_in, public, code, verifier)
    assert answer.status_code == 200, answer.text


def test_code_reuse_is_refused_and_revokes_what_it_issued(
    signed_in: FlaskClient, app_reg: Registered, db: Any
) -> None:
    verifier, challenge = pkce()
    code = code_from(
        authorize(signed_in, app_reg, code_challenge=challenge, code_challenge_method="S256")
    )
    first = exchange(signed_in, app_reg, code, verifier).json
    bearer = {"Authorization": f"Bearer {first['access_token']}"}
    assert signed_in.get("/oidc/acme/userinfo", headers=bearer).status_code == 200
    again = exchange(signed_in, app_reg, code, verifier)
    assert again.status_code == 400 and again.json["error"] == "invalid_grant"
    assert signed_in.get("/oidc/acme/userinfo", headers=bearer).status_code == 401
    refresh = signed_in.post(
        "/oidc/acme/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        headers=basic(app_reg),
    )
    assert refresh.status_code == 400
    grant = db.scalar(select(OidcGrant))
    assert grant.end_reason == "code_replayed"
    assert db.scalar(select(Event).where(Event.kind == "oidc.code_replayed")) is not None


def test_expired_code_is_refused(
    signed_in: FlaskClient, app_reg: Registered, clock: FrozenClock
) -> None:
    code = code_from(authorize(signed_in, app_reg))
    clock.advance(seconds=61)
    answer = exchange(signed_in, app_reg, code, None)
    assert answer.status_code == 400 and answer.json["error"] == "invalid_grant"


def test_code_redirect_uri_must_match_at_the_token_endpoint(
    signed_in: FlaskClient, services: Services, clock: FrozenClock, tenant: Tenant
) -> None:
    two = register(services, clock, redirect_uris=[REDIRECT, "https://app.example/other"])
    code = code_from(authorize(signed_in, two))
    answer = exchange(signed_in, two, code, None, redirect_uri="https://app.example/other")
    assert answer.status_code == 400 and answer.json["error"] == "invalid_grant"


def test_request_objects_are_not_supported(signed_in: FlaskClient, app_reg: Registered) -> None:
    answer = authorize(signed_in, app_reg, request="eyJhbGciOiJub25lIn0.e30.")
    assert parse_qs(urlsplit(answer.location).query)["error"] == ["request_not_supported"]


def test_userinfo_refuses_missing_and_made_up_tokens(client: FlaskClient, tenant: Tenant) -> None:
    assert client.get("/oidc/acme/userinfo").status_code == 401
    made_up = client.get("/oidc/acme/userinfo", headers={"Authorization": "Bearer abc"})
    assert made_up.status_code == 401 and "invalid_token" in made_up.headers["WWW-Authenticate"]


def test_a_nonce_used_before_by_the_client_is_refused(
    signed_in: FlaskClient, app_reg: Registered
) -> None:
    code_from(authorize(signed_in, app_reg, nonce="same"))
    again = authorize(signed_in, app_reg, nonce="same")
    assert parse_qs(urlsplit(again.location).query)["error"] == ["invalid_request"]
