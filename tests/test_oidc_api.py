"""A tenant's apps over the admin JSON API: list, create (secret once), read, update
(name, URIs, people; public is fixed), delete, rotate the secret, list and end an app's
sign-ins. Bad input is 422 with the field named, never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from app.clock import FrozenClock
from app.core import oidc_clients
from app.models import Event, OidcClient, OidcGrant, OidcLogoutDelivery
from app.services import Services
from testkit.api import assert_error, bearer, token_for
from testkit.mail import Mailbox
from testkit.oidc import Receiver, Registered, refresh, sign_in_app, userinfo

GRAFANA = {
    "name": "Grafana",
    "redirectUris": ["https://app.example/callback"],
    "postLogoutUris": ["https://app.example/login"],
}


@pytest.fixture
def headers(client: FlaskClient, mailbox: Mailbox, admin: Any) -> dict[str, str]:
    return bearer(token_for(client, mailbox, admin.email))


def test_an_admin_creates_reads_lists_and_removes_an_app(
    client: FlaskClient, headers: dict[str, str], services: Services, clock: FrozenClock
) -> None:
    made = client.post("/api/admin/apps", json=GRAFANA, headers=headers)
    assert made.status_code == 201, made.text
    app = made.json
    assert app["name"] == "Grafana" and app["public"] is False and app["restricted"] is False
    assert app["issuer"] == "http://localhost/oidc/acme" and app["people"] == []
    secret = app["clientSecret"]
    with services.session() as db:
        row = db.get_one(OidcClient, app["clientId"])
        assert oidc_clients.secret_matches(services.hasher, row, secret)
        assert db.scalar(select(Event).where(Event.kind == "oidc.client_added")).actor_id
    read = client.get(f"/api/admin/apps/{app['clientId']}", headers=headers)
    assert read.status_code == 200 and "clientSecret" not in read.json
    assert read.json["redirectUris"] == GRAFANA["redirectUris"]
    listed = client.get("/api/admin/apps", headers=headers).json["apps"]
    assert [item["clientId"] for item in listed] == [app["clientId"]]
    rotated = client.post(f"/api/admin/apps/{app['clientId']}/secret", headers=headers)
    assert rotated.status_code == 200 and rotated.json["clientSecret"] != secret
    with services.session() as db:
        row = db.get_one(OidcClient, app["clientId"])
        assert not oidc_clients.secret_matches(services.hasher, row, secret)
    gone = client.delete(f"/api/admin/apps/{app['clientId']}", headers=headers)
    assert gone.status_code == 204
    assert_error(
        client.get(f"/api/admin/apps/{app['clientId']}", headers=headers), 404, "not_found"
    )
    assert client.get("/api/admin/apps", headers=headers).json["apps"] == []


def test_a_public_app_has_no_secret_and_stays_public(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    made = client.post("/api/admin/apps", json={**GRAFANA, "public": True}, headers=headers)
    assert made.status_code == 201 and made.json["clientSecret"] is None
    client_id = made.json["clientId"]
    refused = client.patch(f"/api/admin/apps/{client_id}", json={"public": False}, headers=headers)
    assert assert_error(refused, 422, "validation_error")["field"] == "public"
    no_secret = client.post(f"/api/admin/apps/{client_id}/secret", headers=headers)
    assert_error(no_secret, 422, "validation_error")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"redirectUris": ["http://app.example/cb"]}, "redirectUris"),
        ({"redirectUris": []}, "redirectUris"),
        ({"redirectUris": "https://app.example/cb"}, "redirectUris"),
        ({"redirectUris": [1]}, "redirectUris"),
        ({"postLogoutUris": ["https://app.example/#x"]}, "postLogoutUris"),
        ({"backchannelLogoutUri": "ftp://app.example"}, "backchannelLogoutUri"),
        ({"name": " "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"people": ["usr_nobody"]}, "people"),
        ({"restricted": "yes"}, "restricted"),
    ],
)
def test_bad_input_is_422_naming_the_field_and_changes_nothing(
    client: FlaskClient,
    headers: dict[str, str],
    services: Services,
    body: dict[str, Any],
    field: str,
) -> None:
    made = client.post("/api/admin/apps", json=GRAFANA, headers=headers).json
    created = client.post("/api/admin/apps", json={**GRAFANA, **body}, headers=headers)
    assert assert_error(created, 422, "validation_error")["field"] == field
    changed = client.patch(f"/api/admin/apps/{made['clientId']}", json=body, headers=headers)
    assert assert_error(changed, 422, "validation_error")["field"] == field
    with services.session() as db:
        assert len(db.scalars(select(OidcClient)).all()) == 1
        row = db.get_one(OidcClient, made["clientId"])
        assert row.name == "Grafana" and row.redirect_uris == GRAFANA["redirectUris"]
        assert row.restricted is False


def test_update_changes_uris_and_people_and_ends_sign_ins_taken_away(
    client: FlaskClient,
    headers: dict[str, str],
    signed_in: FlaskClient,
    receiver: Receiver,
    admin: Any,
    member: Any,
    services: Services,
) -> None:
    made = client.post(
        "/api/admin/apps", json={**GRAFANA, "backchannelLogoutUri": receiver.url}, headers=headers
    ).json
    app = Registered(made["clientId"], made["clientSecret"])
    tokens = sign_in_app(signed_in, app)
    changed = client.patch(
        f"/api/admin/apps/{app.client_id}",
        json={"name": "Grafana EU", "restricted": True, "people": [admin.id]},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json["name"] == "Grafana EU" and changed.json["restricted"] is True
    assert changed.json["people"] == [{"id": admin.id, "email": admin.email}]
    assert userinfo(signed_in, tokens["access_token"]) == 401
    assert refresh(signed_in, app, tokens["refresh_token"]).status_code == 400
    with services.session() as db:
        assert db.scalar(select(OidcGrant)).end_reason == "access_removed"
        assert db.scalar(select(OidcLogoutDelivery)).client_id == app.client_id
        kinds = {event.kind for event in db.scalars(select(Event))}
        assert {"oidc.client_changed", "oidc.client_people_changed"} <= kinds
    cleared = client.patch(
        f"/api/admin/apps/{app.client_id}", json={"backchannelLogoutUri": ""}, headers=headers
    )
    assert cleared.json["backchannelLogoutUri"] is None
    assert cleared.json["restricted"] is True  # untouched when not sent


def test_an_admin_lists_and_ends_an_apps_sign_ins(
    client: FlaskClient,
    headers: dict[str, str],
    signed_in: FlaskClient,
    member: Any,
    services: Services,
) -> None:
    made = client.post("/api/admin/apps", json=GRAFANA, headers=headers).json
    app = Registered(made["clientId"], made["clientSecret"])
    tokens = sign_in_app(signed_in, app)
    listed = client.get(f"/api/admin/apps/{app.client_id}/sign-ins", headers=headers)
    [item] = listed.json["signIns"]
    assert item["userId"] == member.id and item["email"] == member.email
    ended = client.delete(f"/api/admin/apps/{app.client_id}/sign-ins/{item['id']}", headers=headers)
    assert ended.status_code == 204
    assert refresh(signed_in, app, tokens["refresh_token"]).status_code == 400
    again = client.delete(f"/api/admin/apps/{app.client_id}/sign-ins/{item['id']}", headers=headers)
    assert_error(again, 404, "not_found")
    assert client.get(f"/api/admin/apps/{app.client_id}/sign-ins", headers=headers).json == {
        "signIns": []
    }


def test_members_and_other_tenants_cannot_reach_an_app(
    client: FlaskClient,
    headers: dict[str, str],
    app: Any,
    mailbox: Mailbox,
    make: Any,
    member: Any,
) -> None:
    made = client.post("/api/admin/apps", json=GRAFANA, headers=headers).json
    member_headers = bearer(token_for(app.test_client(), mailbox, member.email))
    assert_error(client.get("/api/admin/apps", headers=member_headers), 403, "forbidden")
    other = make.tenant("other")
    boss = make.user("boss@other.test", other, role="admin")
    other_headers = bearer(token_for(app.test_client(), mailbox, boss.email))
    assert_error(
        client.get(f"/api/admin/apps/{made['clientId']}", headers=other_headers), 404, "not_found"
    )
    assert_error(
        client.delete(f"/api/admin/apps/{made['clientId']}", headers=other_headers),
        404,
        "not_found",
    )
    assert client.get("/api/admin/apps", headers=other_headers).json == {"apps": []}
