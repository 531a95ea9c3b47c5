"""Registering apps for Holdfast's OpenID Provider: the CLI and the core's rules (exact
URIs, secrets shown once and stored as keyed hashes, audited)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app.core import oidc_clients
from app.core.errors import ValidationError
from app.models import Event, OidcClient, Tenant


def run(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=list(args))


def test_cli_adds_a_confidential_client_and_prints_its_secret_once(
    app: Flask, tenant: Tenant, db: Any, services: Any
) -> None:
    result = run(
        app,
        "oidc", "client", "add", "--tenant", "acme", "--name", "Grafana",
        "--redirect-uri", "https://grafana.example/login/generic_oauth",
        "--post-logout-uri", "https://grafana.example/login",
        "--backchannel-logout-uri", "https://grafana.example/bcl",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["issuer"] == "http://localhost/oidc/acme"
    row = db.get(OidcClient, printed["client_id"])
    assert row.tenant_id == tenant.id and not row.is_public
    assert row.redirect_uris == ["https://grafana.example/login/generic_oauth"]
    assert row.post_logout_redirect_uris == ["https://grafana.example/login"]
    assert row.backchannel_logout_uri == "https://grafana.example/bcl"
    # only a keyed hash is stored, and it matches the printed secret
    assert printed["client_secret"] not in (row.secret_hash or "")
    assert oidc_clients.secret_matches(services.hasher, row, printed["client_secret"])
    assert not oidc_clients.secret_matches(services.hasher, row, "hfcs_guess")
    event = db.scalar(select(Event).where(Event.kind == "oidc.client_added"))
    assert event.details["client_id"] == row.id and event.tenant_id == tenant.id


def test_cli_public_client_has_no_secret(app: Flask, tenant: Tenant) -> None:
    result = run(
        app, "oidc", "client", "add", "--tenant", "acme", "--name", "SPA", "--public",
        "--redirect-uri", "http://localhost:3000/cb",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Public client: no secret" in result.output and "Client secret" not in result.output
    listed = run(app, "oidc", "client", "list", "--tenant", "acme")
    assert "public\tSPA\thttp://localhost:3000/cb" in listed.output


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://grafana.example/cb", "use https"),
        ("https://grafana.example/cb#frag", "fragment"),
        ("https://user:pw@grafana.example/cb", "user names"),
        ("/relative", "not an absolute"),
        ("javascript:alert(1)", "not an absolute"),
        ("https://grafana.example/a b", "spaces"),
    ],
)
def test_cli_refuses_uris_that_are_not_exact_absolute_https(
    app: Flask, tenant: Tenant, uri: str, message: str, db: Any
) -> None:
    result = run(
        app, "oidc", "client", "add", "--tenant", "acme", "--name", "X", "--redirect-uri", uri
    )
    assert result.exit_code != 0 and message in result.output
    assert db.scalar(select(OidcClient)) is None


def test_cli_unknown_tenant(app: Flask) -> None:
    result = run(
        app, "oidc", "client", "add", "--tenant", "nope", "--name", "X",
        "--redirect-uri", "https://x.example/cb",
    )  # fmt: skip
    assert result.exit_code != 0 and "No tenant 'nope'" in result.output


def test_rotating_a_secret_stops_the_old_one(services: Any, clock: Any, tenant: Tenant) -> None:
    with services.session(write=True) as db:
        row = db.get_one(Tenant, tenant.id)
        made = oidc_clients.add_client(
            db, services.hasher, row, name="Gitea", redirect_uris=["https://git.example/cb"],
            now=clock.now(),
        )  # fmt: skip
        new = oidc_clients.rotate_secret(db, services.hasher, made.client, now=clock.now())
        assert oidc_clients.secret_matches(services.hasher, made.client, new)
        assert not oidc_clients.secret_matches(services.hasher, made.client, made.secret or "")
        public = oidc_clients.add_client(
            db, services.hasher, row, name="SPA", redirect_uris=["https://spa.example/cb"],
            public=True, now=clock.now(),
        )  # fmt: skip
        with pytest.raises(ValidationError):
            oidc_clients.rotate_secret(db, services.hasher, public.client, now=clock.now())
