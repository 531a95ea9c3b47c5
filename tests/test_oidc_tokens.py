"""Tokens of Holdfast's OpenID Provider live and die with the Holdfast session: refresh
rotation, revocation (RFC 7009), introspection (RFC 7662), and the end of the session
by the person, another device, an admin and idle expiry."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.clock import FrozenClock
from app.core.sessions import end_session
from app.models import Event, OidcGrant, UserSession
from app.services import Services
from testkit.mail import Mailbox
from testkit.oidc import (
    Registered,
    assert_dead,
    basic,
    id_claims,
    introspect,
    refresh,
    register,
    sign_in_app,
    userinfo,
)
from testkit.web import csrf_from, login, session_id_of


@pytest.fixture
def app_reg(services: Services, clock: FrozenClock, tenant: Any) -> Registered:
    return register(services, clock)


def test_refresh_rotates_and_a_replayed_refresh_token_ends_the_sign_in(
    signed_in: FlaskClient, app_reg: Registered, clock: FrozenClock, services: Services, db: Any
) -> None:
    first = sign_in_app(signed_in, app_reg)
    clock.advance(minutes=5)
    second = refresh(signed_in, app_reg, first["refresh_token"])
    assert second.status_code == 200, second.text
    new = second.json
    assert new["refresh_token"] != first["refresh_token"]
    claims = id_claims(signed_in, new["id_token"], clock, app_reg)
    assert claims["sid"] == session_id_of(signed_in, services, clock) and "nonce" not in claims
    assert userinfo(signed_in, first["access_token"]) == 401  # the old pair is gone
    assert userinfo(signed_in, new["access_token"]) == 200
    # the old refresh token again: a thief's copy; the whole sign-in ends
    assert refresh(signed_in, app_reg, first["refresh_token"]).status_code == 400
    assert userinfo(signed_in, new["access_token"]) == 401
    assert db.scalar(select(OidcGrant)).end_reason == "refresh_replayed"
    assert db.scalar(select(Event).where(Event.kind == "oidc.refresh_replayed")) is not None


def test_access_tokens_expire_after_ten_minutes(
    signed_in: FlaskClient, app_reg: Registered, clock: FrozenClock
) -> None:
    tokens = sign_in_app(signed_in, app_reg)
    clock.advance(minutes=10, seconds=1)
    assert userinfo(signed_in, tokens["access_token"]) == 401
    assert refresh(signed_in, app_reg, tokens["refresh_token"]).status_code == 200


def test_signing_out_of_holdfast_kills_the_apps_tokens(
    signed_in: FlaskClient, app_reg: Registered
) -> None:
    tokens = sign_in_app(signed_in, app_reg)
    page = signed_in.get("/devices")
    signed_in.post("/logout", data={"csrf_token": csrf_from(page.text)})
    assert_dead(signed_in, app_reg, tokens)


def test_ending_the_session_from_another_device_kills_the_apps_tokens(
    app: Flask,
    signed_in: FlaskClient,
    app_reg: Registered,
    mailbox: Mailbox,
    member: Any,
    services: Services,
    clock: FrozenClock,
) -> None:
    tokens = sign_in_app(signed_in, app_reg)
    laptop_session = session_id_of(signed_in, services, clock)
    phone = app.test_client()
    login(phone, mailbox, member.email)
    page = phone.get("/devices")
    ended = phone.post(f"/sessions/{laptop_session}/end", data={"csrf_token": csrf_from(page.text)})
    assert ended.status_code == 302
    assert_dead(phone, app_reg, tokens)


def test_an_admin_ending_the_session_kills_the_apps_tokens(
    signed_in: FlaskClient, app_reg: Registered, services: Services, clock: FrozenClock
) -> None:
    tokens = sign_in_app(signed_in, app_reg)
    with services.session(write=True) as db:
        row = db.get_one(UserSession, session_id_of(signed_in, services, clock))
        end_session(db, row, "revoked_by_admin", now=clock.now())
        db.commit()
    assert_dead(signed_in, app_reg, tokens)


def test_idle_expiry_kills_the_refresh_token_without_any_request(
    signed_in: FlaskClient, app_reg: Registered, clock: FrozenClock
) -> None:
    tokens = sign_in_app(signed_in, app_reg)
    clock.advance(minutes=31)  # the tenant's idle timeout is 30 minutes
    assert_dead(signed_in, app_reg, tokens)


def test_revoking_the_access_token_leaves_the_refresh_token(
    signed_in: FlaskClient, app_reg: Registered
) -> None:
    tokens = sign_in_app(signed_in, app_reg)
    answer = signed_in.post(
        "/oidc/acme/revoke",
        data={"token": tokens["access_token"], "token_type_hint": "access_token"},
        headers=basic(app_reg),
    )
    assert answer.status_code == 200
    assert userinfo(signed_in, tokens["access_token"]) == 401
    assert refresh(signed_in, app_reg, tokens["refresh_token"]).status_code == 200


def test_revoking_the_refresh_token_ends_the_sign_in(
    signed_in: FlaskClient, app_reg: Registered, db: Any
) -> None:
    tokens = sign_in_app(signed_in, app_reg)
    answer = signed_in.post(
        "/oidc/acme/revoke", data={"token": tokens["refresh_token"]}, headers=basic(app_reg)
    )
    assert answer.status_code == 200
    assert_dead(signed_in, app_reg, tokens)
    assert db.scalar(select(OidcGrant)).end_reason == "revoked"
    event = db.scalar(select(Event).where(Event.kind == "oidc.token_revoked"))
    assert event.details["token"] == "refresh_token"


def test_revoking_an_unknown_token_answers_200_and_another_clients_token_is_untouched(
    signed_in: FlaskClient, app_reg: Registered, services: Services, clock: FrozenClock
) -> None:
    other = register(services, clock, name="Other")
    tokens = sign_in_app(signed_in, app_reg)
    unknown = signed_in.post("/oidc/acme/revoke", data={"token": "nope"}, headers=basic(other))
    assert unknown.status_code == 200
    signed_in.post(
        "/oidc/acme/revoke", data={"token": tokens["access_token"]}, headers=basic(other)
    )
    assert userinfo(signed_in, tokens["access_token"]) == 200
    wrong_secret = Registered(app_reg.client_id, "hfcs_wrong")
    refused = signed_in.post(
        "/oidc/acme/revoke", data={"token": tokens["access_token"]}, headers=basic(wrong_secret)
    )
    assert refused.status_code == 401


def test_introspection_answers_for_the_clients_own_live_tokens_only(
    signed_in: FlaskClient, app_reg: Registered, services: Services, clock: FrozenClock, member: Any
) -> None:
    tokens = sign_in_app(signed_in, app_reg)
    seen = introspect(signed_in, app_reg, tokens["access_token"])
    assert seen["active"] is True
    assert seen["sub"] == member.id and seen["client_id"] == app_reg.client_id
    assert seen["sid"] == session_id_of(signed_in, services, clock)
    assert seen["exp"] == int(clock.now().timestamp()) + 600
    assert introspect(signed_in, app_reg, tokens["refresh_token"])["active"] is True
    other = register(services, clock, name="Other")
    assert introspect(signed_in, other, tokens["access_token"]) == {"active": False}
    assert introspect(signed_in, app_reg, "made-up") == {"active": False}
