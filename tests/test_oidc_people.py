"""Which people may use an app: everyone of the tenant (the default) or only the people
chosen on the app's page. Someone not allowed gets ``access_denied`` at the app (after
the redirect URI is checked); taking someone off the list, or restricting the app, ends
their sign-ins to it at once (tokens dead, back-channel logout through the outbox).
Removing an app ends every sign-in to it and still tells it through the back channel."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from app.clock import FrozenClock
from app.models import Event, OidcClient, OidcClientPerson, OidcGrant, OidcLogoutDelivery
from app.services import Services
from app.worker import deliver_logouts
from testkit.oidc import (
    REDIRECT,
    Receiver,
    Registered,
    authorize,
    logout_claims,
    pkce,
    refresh,
    register,
    sign_in_app,
    userinfo,
)
from testkit.rows import Factory
from testkit.web import csrf_from


@pytest.fixture
def grafana(services: Services, clock: FrozenClock, tenant: Any, receiver: Receiver) -> Registered:
    return register(services, clock, backchannel_logout_uri=receiver.url)


def choose(admin_client: FlaskClient, app: Registered, *, who: str, people: list[str]) -> Any:
    page = admin_client.get(f"/admin/apps/{app.client_id}")
    assert page.status_code == 200, page.text
    data = {"csrf_token": csrf_from(page.text), "who": who, "people": people}
    return admin_client.post(f"/admin/apps/{app.client_id}/people", data=data)


def test_the_apps_page_lists_the_tenants_people_to_choose(
    admin_client: FlaskClient, grafana: Registered, member: Any, admin: Any
) -> None:
    page = admin_client.get(f"/admin/apps/{grafana.client_id}")
    assert page.status_code == 200
    assert 'id="who-everyone" checked' in page.text  # open to everyone by default
    assert f'value="{member.id}"' in page.text and f'value="{admin.id}"' in page.text
    assert 'type="search" id="people-filter"' in page.text


def test_someone_not_chosen_gets_access_denied_at_the_app(
    admin_client: FlaskClient,
    signed_in: FlaskClient,
    grafana: Registered,
    admin: Any,
    member: Any,
    services: Services,
) -> None:
    answer = choose(admin_client, grafana, who="chosen", people=[admin.id])
    assert answer.status_code == 302
    _, challenge = pkce()
    refused = authorize(signed_in, grafana, code_challenge=challenge, code_challenge_method="S256")
    assert refused.status_code == 302
    location = urlsplit(refused.location)
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["error"] == ["access_denied"] and query["state"] == ["st-123"]
    assert "code" not in query
    with services.session() as db:
        event = db.scalar(select(Event).where(Event.kind == "oidc.access_denied"))
        assert event.subject_id == member.id and event.details["client_id"] == grafana.client_id
        assert db.scalar(select(OidcGrant)) is None
    # The chosen person signs in as before.
    assert sign_in_app(admin_client, grafana)["access_token"]


def test_a_wrong_redirect_uri_is_refused_on_a_page_before_access_is_checked(
    admin_client: FlaskClient, signed_in: FlaskClient, grafana: Registered, admin: Any
) -> None:
    choose(admin_client, grafana, who="chosen", people=[admin.id])
    _, challenge = pkce()
    answer = authorize(
        signed_in,
        grafana,
        redirect_uri="https://evil.example/callback",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    assert answer.status_code == 400 and "evil.example" not in answer.headers.get("Location", "")
    assert "This sign-in link is not valid" in answer.text


def test_taking_someone_off_the_list_ends_their_sign_in(
    admin_client: FlaskClient,
    signed_in: FlaskClient,
    grafana: Registered,
    receiver: Receiver,
    admin: Any,
    member: Any,
    services: Services,
    clock: FrozenClock,
) -> None:
    choose(admin_client, grafana, who="chosen", people=[admin.id, member.id])
    tokens = sign_in_app(signed_in, grafana)
    mine = sign_in_app(admin_client, grafana)
    answer = choose(admin_client, grafana, who="chosen", people=[admin.id])
    assert answer.status_code == 302
    assert userinfo(signed_in, tokens["access_token"]) == 401
    assert refresh(signed_in, grafana, tokens["refresh_token"]).status_code == 400
    assert userinfo(admin_client, mine["access_token"]) == 200  # the admin stays chosen
    assert deliver_logouts(services, private_ok=True) == 1
    [token] = receiver.tokens()
    assert logout_claims(signed_in, token, clock, grafana)["sub"] == member.id
    with services.session() as db:
        grant = db.scalar(select(OidcGrant).where(OidcGrant.user_id == member.id))
        assert grant.end_reason == "access_removed"
        event = db.scalar(
            select(Event)
            .where(Event.kind == "oidc.client_people_changed")
            .order_by(Event.at.desc(), Event.id.desc())
        )
        assert event.details["removed"] == [member.id] and event.details["sign_ins_ended"] == 1
        assert {row.user_id for row in db.scalars(select(OidcClientPerson))} == {admin.id}
    page = admin_client.get(f"/admin/apps/{grafana.client_id}")
    assert (
        "2 people</span>" in page.text
        and "1 chosen</span>" in page.text
        and 'id="who-chosen" checked' in page.text
    )


def test_restricting_an_open_app_ends_the_sign_ins_of_people_not_chosen(
    admin_client: FlaskClient,
    signed_in: FlaskClient,
    grafana: Registered,
    receiver: Receiver,
    admin: Any,
    services: Services,
) -> None:
    tokens = sign_in_app(signed_in, grafana)
    choose(admin_client, grafana, who="chosen", people=[admin.id])
    assert refresh(signed_in, grafana, tokens["refresh_token"]).status_code == 400
    assert deliver_logouts(services, private_ok=True) == 1
    # Opening it to everyone again lets the person sign in again; the list is kept.
    choose(admin_client, grafana, who="everyone", people=[admin.id])
    assert sign_in_app(signed_in, grafana)["access_token"]
    with services.session() as db:
        assert db.get_one(OidcClient, grafana.client_id).restricted is False
        assert [row.user_id for row in db.scalars(select(OidcClientPerson))] == [admin.id]


def test_someone_of_another_tenant_cannot_be_chosen(
    admin_client: FlaskClient, grafana: Registered, make: Factory, services: Services
) -> None:
    stranger = make.user("eve@other.test", make.tenant("other"))
    answer = choose(admin_client, grafana, who="chosen", people=[stranger.id])
    assert answer.status_code == 422 and "is not a person of this organisation" in answer.text
    with services.session() as db:
        assert db.scalar(select(OidcClientPerson)) is None
        assert db.get_one(OidcClient, grafana.client_id).restricted is False


def test_removing_an_app_ends_its_sign_ins_and_still_tells_it(
    admin_client: FlaskClient,
    signed_in: FlaskClient,
    grafana: Registered,
    receiver: Receiver,
    member: Any,
    services: Services,
    clock: FrozenClock,
) -> None:
    tokens = sign_in_app(signed_in, grafana)
    page = admin_client.get(f"/admin/apps/{grafana.client_id}")
    assert 'hx-confirm="Remove Grafana? Everyone signed in to it is signed out' in page.text
    answer = admin_client.post(
        f"/admin/apps/{grafana.client_id}/remove", data={"csrf_token": csrf_from(page.text)}
    )
    assert answer.status_code == 302
    listing = admin_client.get(answer.location)
    assert "Grafana was removed" in listing.text and grafana.client_id not in listing.text
    assert userinfo(signed_in, tokens["access_token"]) == 401
    assert refresh(signed_in, grafana, tokens["refresh_token"]).status_code == 401  # unknown client
    assert deliver_logouts(services, private_ok=True) == 1
    [token] = receiver.tokens()
    assert logout_claims(signed_in, token, clock, grafana)["sub"] == member.id
    assert admin_client.get(f"/admin/apps/{grafana.client_id}").status_code == 404
    with services.session() as db:
        assert db.get_one(OidcClient, grafana.client_id).removed_at == clock.now()
        assert db.scalar(select(OidcGrant)).end_reason == "app_removed"
        assert db.scalar(select(OidcLogoutDelivery)).status == "delivered"
        event = db.scalar(select(Event).where(Event.kind == "oidc.client_removed"))
        assert event.details["sign_ins_ended"] == 1 and event.actor_id is not None


def test_an_app_with_keys_offers_no_new_secret_on_its_pages(
    admin_client: FlaskClient, services: Services, clock: FrozenClock, tenant: Any
) -> None:
    from joserfc.jwk import ECKey

    key = ECKey.generate_key("P-256").as_dict(private=False)
    keyed = register(services, clock, name="Keyed", jwks={"keys": [key]})
    for url in ("/admin/apps", f"/admin/apps/{keyed.client_id}"):
        page = admin_client.get(url)
        assert "(<code>private_key_jwt</code>)" in page.text
        assert f"/admin/apps/{keyed.client_id}/secret" not in page.text
