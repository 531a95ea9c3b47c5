"""The device page lists, on each session, the apps signed in through it, and signs out
of one app without ending the session."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.clock import FrozenClock
from app.models import Event, OidcGrant, OidcLogoutDelivery, UserSession
from app.services import Services
from testkit.mail import Mailbox
from testkit.oidc import Registered, refresh, register, sign_in_app, userinfo
from testkit.web import csrf_from, login, session_id_of


@pytest.fixture
def grafana(services: Services, clock: FrozenClock, tenant: Any) -> Registered:
    return register(
        services, clock, name="Grafana", backchannel_logout_uri="https://grafana.example/bcl"
    )


def test_the_session_card_lists_its_apps_and_signs_out_of_one(
    signed_in: FlaskClient,
    grafana: Registered,
    services: Services,
    clock: FrozenClock,
) -> None:
    gitea = register(services, clock, name="Gitea")
    grafana_tokens = sign_in_app(signed_in, grafana)
    gitea_tokens = sign_in_app(signed_in, gitea)
    session_id = session_id_of(signed_in, services, clock)
    page = signed_in.get("/devices")
    assert "Signed in to" in page.text
    assert "Sign out of Grafana" in page.text and "Sign out of Gitea" in page.text
    with services.session() as db:
        grant = db.scalar(select(OidcGrant).where(OidcGrant.client_id == grafana.client_id))
        grant_id = grant.id
    answer = signed_in.post(
        f"/sessions/apps/{grant_id}/end", data={"csrf_token": csrf_from(page.text)}
    )
    assert answer.status_code == 302 and answer.location == "/devices"
    # Grafana is signed out (its tokens dead, its logout token queued), Gitea is not,
    # and the Holdfast session lives on.
    assert refresh(signed_in, grafana, grafana_tokens["refresh_token"]).status_code == 400
    assert userinfo(signed_in, gitea_tokens["access_token"]) == 200
    after = signed_in.get("/devices")
    assert after.status_code == 200
    assert "Sign out of Grafana" not in after.text and "Sign out of Gitea" in after.text
    with services.session() as db:
        assert db.get_one(UserSession, session_id).ended_at is None
        assert db.get_one(OidcGrant, grant_id).end_reason == "signed_out"
        delivery = db.scalar(select(OidcLogoutDelivery))
        assert delivery.client_id == grafana.client_id and delivery.session_id == session_id
        event = db.scalar(select(Event).where(Event.kind == "oidc.signed_out"))
        assert event.details["client_id"] == grafana.client_id


def test_another_persons_app_sign_in_cannot_be_ended(
    app: Flask,
    signed_in: FlaskClient,
    grafana: Registered,
    mailbox: Mailbox,
    make: Any,
    tenant: Any,
    services: Services,
) -> None:
    tokens = sign_in_app(signed_in, grafana)
    make.user("kim@acme.test", tenant)
    other = app.test_client()
    login(other, mailbox, "kim@acme.test")
    page = other.get("/devices")
    assert "Sign out of Grafana" not in page.text
    with services.session() as db:
        grant_id = db.scalar(select(OidcGrant.id))
    answer = other.post(f"/sessions/apps/{grant_id}/end", data={"csrf_token": csrf_from(page.text)})
    assert answer.status_code == 404
    assert refresh(signed_in, grafana, tokens["refresh_token"]).status_code == 200
