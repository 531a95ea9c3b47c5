"""Back-channel logout: a Holdfast session ending for any reason signs its apps out with
a logout token, delivered by the worker through the durable queue with retries, and
validated here with joserfc against the issuer's JWKS."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from app.clock import FrozenClock
from app.core.sessions import end_session
from app.models import OidcGrant, OidcLogoutDelivery, UserSession
from app.services import Services
from app.worker import deliver_logouts
from testkit.mail import Mailbox
from testkit.oidc import ISSUER, Registered, refresh, register, sign_in_app
from testkit.rows import Factory
from testkit.web import csrf_from, login, session_id_of

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


class Receiver:
    """An app's back-channel logout endpoint: records each POST, answers ``status``."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.status = 200
        self.server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/backchannel"

    def _wsgi(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        self.bodies.append(request.get_data(as_text=True))
        return Response(status=self.status)(environ, start_response)

    def tokens(self) -> list[str]:
        return [parse_qs(body)["logout_token"][0] for body in self.bodies]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    yield found
    found.server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def app_reg(services: Services, clock: FrozenClock, tenant: Any, receiver: Receiver) -> Registered:
    return register(services, clock, backchannel_logout_uri=receiver.url)


def logout_claims(
    client: FlaskClient, token: str, clock: FrozenClock, app: Registered
) -> dict[str, Any]:
    keys = KeySet.import_key_set(client.get("/oidc/acme/jwks").json)
    decoded = jwt.decode(token, keys, algorithms=["ES256"])
    assert decoded.header["typ"] == "logout+jwt"
    jwt.JWTClaimsRegistry(
        now=int(clock.now().timestamp()),
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": app.client_id},
        iat={"essential": True},
        jti={"essential": True},
        sid={"essential": True},
    ).validate(decoded.claims)
    assert decoded.claims["events"] == {LOGOUT_EVENT: {}}
    assert "nonce" not in decoded.claims
    return decoded.claims


def deliver(services: Services) -> int:
    return deliver_logouts(services, private_ok=True)


def assert_signed_out(
    client: FlaskClient,
    services: Services,
    clock: FrozenClock,
    app: Registered,
    receiver: Receiver,
    tokens: dict[str, Any],
    session_id: str,
    user_id: str,
) -> None:
    assert deliver(services) == 1
    [token] = receiver.tokens()
    claims = logout_claims(client, token, clock, app)
    assert claims["sid"] == session_id and claims["sub"] == user_id
    assert refresh(client, app, tokens["refresh_token"]).status_code == 400
    with services.session() as db:
        delivery = db.scalar(select(OidcLogoutDelivery))
        assert delivery.status == "delivered" and delivery.attempts == 1
        assert db.scalar(select(OidcGrant)).end_reason == "session_ended"


def test_ending_a_session_on_the_devices_page_sends_a_logout_token(
    app: Flask,
    signed_in: FlaskClient,
    app_reg: Registered,
    receiver: Receiver,
    mailbox: Mailbox,
    member: Any,
    services: Services,
    clock: FrozenClock,
) -> None:
    tokens = sign_in_app(signed_in, app_reg)
    laptop = session_id_of(signed_in, services, clock)
    assert deliver(services) == 0  # nothing queued while the session lives
    phone = app.test_client()
    login(phone, mailbox, member.email)
    page = phone.get("/devices")
    phone.post(f"/sessions/{laptop}/end", data={"csrf_token": csrf_from(page.text)})
    assert_signed_out(phone, services, clock, app_reg, receiver, tokens, laptop, member.id)


def test_an_admin_ending_the_session_sends_a_logout_token(
    signed_in: FlaskClient,
    app_reg: Registered,
    receiver: Receiver,
    member: Any,
    services: Services,
    clock: FrozenClock,
) -> None:
    tokens = sign_in_app(signed_in, app_reg)
    session_id = session_id_of(signed_in, services, clock)
    with services.session(write=True) as db:
        end_session(db, db.get_one(UserSession, session_id), "revoked_by_admin", now=clock.now())
        db.commit()
    assert_signed_out(signed_in, services, clock, app_reg, receiver, tokens, session_id, member.id)


def test_the_session_limit_evicting_the_session_sends_a_logout_token(
    app: Flask,
    signed_in: FlaskClient,
    app_reg: Registered,
    receiver: Receiver,
    mailbox: Mailbox,
    member: Any,
    make: Factory,
    tenant: Any,
    services: Services,
    clock: FrozenClock,
) -> None:
    tokens = sign_in_app(signed_in, app_reg)
    first = session_id_of(signed_in, services, clock)
    make.policy(tenant, max_sessions_per_user=1, limit_mode="evict_oldest")
    clock.advance(minutes=1)
    login(app.test_client(), mailbox, member.email)
    with services.session() as db:
        assert db.get_one(UserSession, first).end_reason == "limit_evicted"
    assert_signed_out(signed_in, services, clock, app_reg, receiver, tokens, first, member.id)


def test_idle_expiry_with_no_request_sends_a_logout_token(
    signed_in: FlaskClient,
    app_reg: Registered,
    receiver: Receiver,
    member: Any,
    services: Services,
    clock: FrozenClock,
) -> None:
    tokens = sign_in_app(signed_in, app_reg)
    session_id = session_id_of(signed_in, services, clock)
    clock.advance(minutes=31)  # the idle timeout is 30 minutes; no request comes
    assert_signed_out(signed_in, services, clock, app_reg, receiver, tokens, session_id, member.id)
    with services.session() as db:
        assert db.get_one(UserSession, session_id).end_reason == "idle_expired"


def test_a_failing_app_is_retried_with_backoff_and_the_same_jti(
    signed_in: FlaskClient,
    app_reg: Registered,
    receiver: Receiver,
    services: Services,
    clock: FrozenClock,
) -> None:
    sign_in_app(signed_in, app_reg)
    page = signed_in.get("/devices")
    signed_in.post("/logout", data={"csrf_token": csrf_from(page.text)})
    receiver.status = 503
    assert deliver(services) == 1
    with services.session() as db:
        delivery = db.scalar(select(OidcLogoutDelivery))
        assert delivery.status == "pending" and delivery.attempts == 1
        assert delivery.last_error == "HTTP 503"
    assert deliver(services) == 0  # not due before the backoff
    clock.advance(minutes=1)
    receiver.status = 200
    assert deliver(services) == 1
    first, second = receiver.tokens()
    jti = {logout_claims(signed_in, t, clock, app_reg)["jti"] for t in (first, second)}
    assert len(jti) == 1
    with services.session() as db:
        assert db.scalar(select(OidcLogoutDelivery)).status == "delivered"


def test_an_app_without_a_back_channel_uri_is_signed_out_without_a_delivery(
    signed_in: FlaskClient, services: Services, clock: FrozenClock, tenant: Any
) -> None:
    plain = register(services, clock, name="No back-channel")
    tokens = sign_in_app(signed_in, plain)
    page = signed_in.get("/devices")
    signed_in.post("/logout", data={"csrf_token": csrf_from(page.text)})
    assert deliver(services) == 0
    assert refresh(signed_in, plain, tokens["refresh_token"]).status_code == 400
    with services.session() as db:
        assert db.scalar(select(OidcGrant)).end_reason == "session_ended"
        assert db.scalar(select(OidcLogoutDelivery)) is None
