"""``holdfast oidc client remove`` and ``rotate-secret``: the operator's way to take an
app away (its sign-ins end, the app still hears of it through the back channel) and to
replace its secret (printed once, the old one dead at once)."""

from __future__ import annotations

import json
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.clock import FrozenClock
from app.core import oidc_clients
from app.models import Event, OidcClient, OidcGrant
from app.services import Services
from app.worker import deliver_logouts
from testkit.oidc import Receiver, Registered, basic, logout_claims, register, sign_in_app


def run(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=list(args))


def test_remove_ends_the_apps_sign_ins_and_refuses_its_id(
    app: Flask,
    signed_in: FlaskClient,
    receiver: Receiver,
    member: Any,
    services: Services,
    clock: FrozenClock,
) -> None:
    grafana = register(services, clock, backchannel_logout_uri=receiver.url)
    tokens = sign_in_app(signed_in, grafana)
    result = run(app, "oidc", "client", "remove", "--tenant", "acme", grafana.client_id, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "client_id": grafana.client_id,
        "removed": True,
        "sign_ins_ended": 1,
    }
    answer = signed_in.post(
        "/oidc/acme/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers=basic(grafana),
    )
    assert answer.status_code == 401 and answer.json["error"] == "invalid_client"
    assert deliver_logouts(services, private_ok=True) == 1
    [token] = receiver.tokens()
    assert logout_claims(signed_in, token, clock, grafana)["sub"] == member.id
    with services.session() as db:
        assert db.scalar(select(OidcGrant)).end_reason == "app_removed"
        event = db.scalar(select(Event).where(Event.kind == "oidc.client_removed"))
        assert event.details["client_id"] == grafana.client_id and event.actor_id is None
    listed = run(app, "oidc", "client", "list", "--tenant", "acme")
    assert grafana.client_id not in listed.output
    again = run(app, "oidc", "client", "remove", "--tenant", "acme", grafana.client_id)
    assert again.exit_code == 1 and "No app" in again.output


def test_remove_in_words_and_of_another_tenant(
    app: Flask, make: Any, tenant: Any, services: Services, clock: FrozenClock
) -> None:
    grafana = register(services, clock)
    make.tenant("other")
    elsewhere = run(app, "oidc", "client", "remove", "--tenant", "other", grafana.client_id)
    assert elsewhere.exit_code == 1 and f"No app '{grafana.client_id}' in other" in elsewhere.output
    result = run(app, "oidc", "client", "remove", "--tenant", "acme", grafana.client_id)
    assert result.exit_code == 0, result.output
    assert f"Removed Grafana ({grafana.client_id}) from acme. Sign-ins ended: 0." in result.output


def test_rotate_secret_prints_a_new_secret_once_and_the_old_one_dies(
    app: Flask, tenant: Any, services: Services, clock: FrozenClock
) -> None:
    grafana = register(services, clock)
    result = run(
        app, "oidc", "client", "rotate-secret", "--tenant", "acme", grafana.client_id, "--json"
    )
    assert result.exit_code == 0, result.output
    secret = json.loads(result.output)["client_secret"]
    assert secret.startswith("hfcs_") and secret != grafana.secret
    with services.session() as db:
        row = db.get_one(OidcClient, grafana.client_id)
        assert oidc_clients.secret_matches(services.hasher, row, secret)
        assert not oidc_clients.secret_matches(services.hasher, row, grafana.secret or "")
        assert db.scalar(select(Event).where(Event.kind == "oidc.client_secret_rotated"))
    words = run(app, "oidc", "client", "rotate-secret", "--tenant", "acme", grafana.client_id)
    assert words.exit_code == 0 and "Client secret: hfcs_" in words.output


def test_rotate_secret_of_a_public_app_is_refused(
    app: Flask, tenant: Any, services: Services, clock: FrozenClock
) -> None:
    spa: Registered = register(services, clock, name="SPA", public=True)
    result = run(app, "oidc", "client", "rotate-secret", "--tenant", "acme", spa.client_id)
    assert result.exit_code == 1 and "A public app has no secret." in result.output
