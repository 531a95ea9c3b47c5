"""The tenant admin's Apps page: register an app (secret shown once), rotate its secret,
see its active sign-ins and end one."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.core import oidc_clients
from app.models import Event, OidcClient, OidcGrant, OidcLogoutDelivery, UserSession
from app.services import Services
from testkit.mail import Mailbox
from testkit.oidc import Registered, refresh, sign_in_app
from testkit.web import csrf_from, login


@pytest.fixture
def admin(app: Flask, make: Any, tenant: Any, mailbox: Mailbox) -> FlaskClient:
    make.user("boss@acme.test", tenant, role="admin")
    client = app.test_client()
    login(client, mailbox, "boss@acme.test")
    return client


def register_on_page(admin: FlaskClient, **fields: str) -> Any:
    page = admin.get("/admin/apps")
    assert page.status_code == 200, page.text
    return admin.post("/admin/apps", data={"csrf_token": csrf_from(page.text), **fields})


def test_admin_registers_an_app_and_sees_the_secret_once(
    admin: FlaskClient, services: Services
) -> None:
    answer = register_on_page(
        admin,
        name="Grafana",
        redirect_uris="https://grafana.example/login/generic_oauth\n",
        post_logout_uris="https://grafana.example/login",
        backchannel_logout_uri="https://grafana.example/bcl",
    )
    assert answer.status_code == 200
    client_id = re.search(r'id="client-id">([^<]+)<', answer.text).group(1)  # type: ignore[union-attr]
    secret = re.search(r'id="client-secret" class="secret">([^<]+)<', answer.text).group(1)  # type: ignore[union-attr]
    with services.session() as db:
        row = db.get_one(OidcClient, client_id)
        assert row.redirect_uris == ["https://grafana.example/login/generic_oauth"]
        assert oidc_clients.secret_matches(services.hasher, row, secret)
        event = db.scalar(select(Event).where(Event.kind == "oidc.client_added"))
        assert event.actor_id is not None and event.details["client_id"] == client_id
    listing = admin.get("/admin/apps")
    assert "Grafana" in listing.text and client_id in listing.text and secret not in listing.text
    assert 'href="/admin/apps"' in listing.text  # in the admin navigation

    page = admin.get("/admin/apps")
    rotated = admin.post(
        f"/admin/apps/{client_id}/secret", data={"csrf_token": csrf_from(page.text)}
    )
    new_secret = re.search(r'id="client-secret" class="secret">([^<]+)<', rotated.text).group(1)  # type: ignore[union-attr]
    with services.session() as db:
        row = db.get_one(OidcClient, client_id)
        assert oidc_clients.secret_matches(services.hasher, row, new_secret)
        assert not oidc_clients.secret_matches(services.hasher, row, secret)


def test_a_bad_uri_is_explained_and_nothing_is_registered(
    admin: FlaskClient, services: Services
) -> None:
    answer = register_on_page(admin, name="Bad", redirect_uris="http://grafana.example/cb")
    assert answer.status_code == 422 and "use https" in answer.text
    with services.session() as db:
        assert db.scalar(select(OidcClient)) is None


def test_members_cannot_see_the_apps_page(signed_in: FlaskClient) -> None:
    assert signed_in.get("/admin/apps").status_code == 403


def test_admin_sees_and_ends_a_persons_sign_in(
    admin: FlaskClient, signed_in: FlaskClient, services: Services, clock: Any, tenant: Any
) -> None:
    with services.session(write=True) as db:
        made = oidc_clients.add_client(
            db, services.hasher, db.get_one(type(tenant), tenant.id), name="Gitea",
            redirect_uris=["https://app.example/callback"],
            backchannel_logout_uri="https://app.example/bcl", now=clock.now(),
        )  # fmt: skip
        db.commit()
        app = Registered(made.client.id, made.secret)
    tokens = sign_in_app(signed_in, app)
    page = admin.get("/admin/apps")
    assert "sam@acme.test" in page.text and "Active sign-ins (1)" in page.text
    with services.session() as db:
        grant = db.scalar(select(OidcGrant))
        grant_id, session_id = grant.id, grant.session_id
    # each page's sign-out form comes back to that page
    end = f"/admin/apps/{app.client_id}/sign-ins/{grant_id}/end"
    assert f'action="{end}"' in page.text
    own_page = admin.get(f"/admin/apps/{app.client_id}").text
    assert f'action="{end}?from=app"' in own_page and "Active sign-ins (1)" in own_page
    ended = admin.post(
        f"/admin/apps/{app.client_id}/sign-ins/{grant_id}/end",
        data={"csrf_token": csrf_from(page.text)},
    )
    assert ended.status_code == 302
    assert refresh(signed_in, app, tokens["refresh_token"]).status_code == 400
    with services.session() as db:
        assert db.get_one(UserSession, session_id).ended_at is None
        assert db.get_one(OidcGrant, grant_id).end_reason == "signed_out"
        assert db.scalar(select(OidcLogoutDelivery)).client_id == app.client_id
    assert "Active sign-ins (0)" in admin.get("/admin/apps").text
