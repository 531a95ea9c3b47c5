"""Back-channel logout: a Holdfast session ending for any reason signs its apps out with
a logout token, delivered by the worker through the durable queue with retries, and
validated here with joserfc against the issuer's JWKS."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.clock import FrozenClock
from app.core.sessions import end_session
from app.models import OidcGrant, OidcLogoutDelivery, UserSession
from app.services import Services
from app.worker import deliver_logouts
from testkit.mail import Mailbox
from testkit.oidc import Receiver, Registered, logout_claims, refresh, register, sign_in_app
from testkit.rows import Factory
from testkit.web import csrf_from, login, session_id_of


@pytest.fixture
def app_reg(services: Services, clock: FrozenClock, tenant: Any, receiver: Receiver) -> Registered:
    return register(services, clock, backchannel_logout_uri=receiver.url)


@dataclass
class SignedInApp:
    """``signed_in``'s browser signed in to ``app_reg``: the app's tokens and the
    Holdfast session they hang on."""

    tokens: dict[str, Any]
    session_id: str


@pytest.fixture
def app_sign_in(
    signed_in: FlaskClient, app_reg: Registered, services: Services, clock: FrozenClock
) -> SignedInApp:
    tokens = sign_in_app(signed_in, app_reg)
    return SignedInApp(tokens, session_id_of(signed_in, services, clock))


def deliver(services: Services) -> int:
    return deliver_logouts(services, private_ok=True)


@dataclass
class SignOutCheck:
    """What every "a session ended → its app hears of it" test checks, set up once."""

    services: Services
    clock: FrozenClock
    app: Registered
    receiver: Receiver
    user_id: str

    def __call__(self, client: FlaskClient, sign_in: SignedInApp) -> None:
        """One logout token delivered by the worker for ``sign_in``'s session, valid
        against the JWKS; the refresh token refused; the grant ended with the session."""
        assert deliver(self.services) == 1
        [token] = self.receiver.tokens()
        claims = logout_claims(client, token, self.clock, self.app)
        assert claims["sid"] == sign_in.session_id and claims["sub"] == self.user_id
        assert refresh(client, self.app, sign_in.tokens["refresh_token"]).status_code == 400
        with self.services.session() as db:
            delivery = db.scalar(select(OidcLogoutDelivery))
            assert delivery.status == "delivered" and delivery.attempts == 1
            assert db.scalar(select(OidcGrant)).end_reason == "session_ended"


@pytest.fixture
def assert_signed_out(
    services: Services, clock: FrozenClock, app_reg: Registered, receiver: Receiver, member: Any
) -> SignOutCheck:
    return SignOutCheck(services, clock, app_reg, receiver, member.id)


def test_ending_a_session_on_the_devices_page_sends_a_logout_token(
    app: Flask,
    app_sign_in: SignedInApp,
    assert_signed_out: SignOutCheck,
    mailbox: Mailbox,
    member: Any,
    services: Services,
) -> None:
    assert deliver(services) == 0  # nothing queued while the session lives
    phone = app.test_client()
    login(phone, mailbox, member.email)
    page = phone.get("/devices")
    phone.post(f"/sessions/{app_sign_in.session_id}/end", data={"csrf_token": csrf_from(page.text)})
    assert_signed_out(phone, app_sign_in)


def test_an_admin_ending_the_session_sends_a_logout_token(
    signed_in: FlaskClient,
    app_sign_in: SignedInApp,
    assert_signed_out: SignOutCheck,
    services: Services,
    clock: FrozenClock,
) -> None:
    with services.session(write=True) as db:
        session = db.get_one(UserSession, app_sign_in.session_id)
        end_session(db, session, "revoked_by_admin", now=clock.now())
        db.commit()
    assert_signed_out(signed_in, app_sign_in)


def test_the_session_limit_evicting_the_session_sends_a_logout_token(
    app: Flask,
    signed_in: FlaskClient,
    app_sign_in: SignedInApp,
    assert_signed_out: SignOutCheck,
    mailbox: Mailbox,
    member: Any,
    make: Factory,
    tenant: Any,
    services: Services,
    clock: FrozenClock,
) -> None:
    make.policy(tenant, max_sessions_per_user=1, limit_mode="evict_oldest")
    clock.advance(minutes=1)
    login(app.test_client(), mailbox, member.email)
    with services.session() as db:
        assert db.get_one(UserSession, app_sign_in.session_id).end_reason == "limit_evicted"
    assert_signed_out(signed_in, app_sign_in)


def test_idle_expiry_with_no_request_sends_a_logout_token(
    signed_in: FlaskClient,
    app_sign_in: SignedInApp,
    assert_signed_out: SignOutCheck,
    services: Services,
    clock: FrozenClock,
) -> None:
    clock.advance(minutes=31)  # the idle timeout is 30 minutes; no request comes
    assert_signed_out(signed_in, app_sign_in)
    with services.session() as db:
        assert db.get_one(UserSession, app_sign_in.session_id).end_reason == "idle_expired"


def test_keys_rotate_end_sessions_signs_every_app_out(
    app: Flask,
    signed_in: FlaskClient,
    app_sign_in: SignedInApp,
    assert_signed_out: SignOutCheck,
    services: Services,
    clock: FrozenClock,
) -> None:
    """``holdfast keys rotate --end-sessions`` ends every session in one UPDATE (no
    ``session.ended`` events): the worker's sweep still signs their apps out."""
    answer = app.test_cli_runner().invoke(args=["keys", "rotate", "--end-sessions"])
    assert answer.exit_code == 0, answer.output
    with services.session() as db:
        session = db.get_one(UserSession, app_sign_in.session_id)
        assert session.end_reason == "keys_rotated"
        assert db.scalar(select(OidcGrant)).ended_at is None  # not yet: the sweep does it
    assert (
        refresh(signed_in, assert_signed_out.app, app_sign_in.tokens["refresh_token"]).status_code
        == 400
    )
    assert_signed_out(signed_in, app_sign_in)


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
