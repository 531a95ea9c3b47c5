"""private_key_jwt at the token endpoint (OpenID Connect Core 9, RFC 7523): an app that
registered its public keys inline signs a client assertion with joserfc; Holdfast checks
the signature (asymmetric algorithms only), iss = sub = the client id, aud (the token
endpoint or the issuer), exp on its own clock, and the jti once. No key is ever fetched
from the app."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey
from sqlalchemy import select

from app.clock import FrozenClock
from app.core import retention
from app.models import OidcAssertionJti
from app.services import Services
from testkit.oidc import (
    ISSUER,
    REDIRECT,
    Registered,
    authorize,
    basic,
    code_from,
    id_claims,
    pkce,
    register,
)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture
def key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "app-key-1"})


@pytest.fixture
def keyed(services: Services, clock: FrozenClock, tenant: Any, key: ECKey) -> Registered:
    jwks = {"keys": [key.as_dict(private=False)]}
    return register(services, clock, name="Keyed", jwks=jwks)


def assertion(
    app: Registered, key: Any, clock: FrozenClock, *, alg: str = "ES256", **claims: Any
) -> str:
    moment = int(clock.now().timestamp())
    body = {
        "iss": app.client_id,
        "sub": app.client_id,
        "aud": f"{ISSUER}/token",
        "iat": moment,
        "exp": moment + 60,
        "jti": secrets.token_urlsafe(12),
        **claims,
    }
    header = {"alg": alg, "kid": key.kid} if key.kid else {"alg": alg}
    return jwt.encode(header, body, key)


def token_request(client: FlaskClient, signed: str, **data: str) -> Any:
    form = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed, **data}
    return client.post("/oidc/acme/token", data=form)


def code_for(signed_in: FlaskClient, app: Registered) -> tuple[str, str]:
    verifier, challenge = pkce()
    code = code_from(
        authorize(signed_in, app, code_challenge=challenge, code_challenge_method="S256")
    )
    return code, verifier


def exchange(signed_in: FlaskClient, app: Registered, signed: str) -> Any:
    code, verifier = code_for(signed_in, app)
    return token_request(
        signed_in,
        signed,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )


def test_discovery_offers_private_key_jwt(client: FlaskClient, tenant: Any) -> None:
    found = client.get("/oidc/acme/.well-known/openid-configuration").json
    assert "private_key_jwt" in found["token_endpoint_auth_methods_supported"]
    assert "ES256" in found["token_endpoint_auth_signing_alg_values_supported"]
    assert not {"HS256", "none"} & set(found["token_endpoint_auth_signing_alg_values_supported"])


def test_a_signed_assertion_exchanges_the_code_and_refreshes(
    signed_in: FlaskClient, keyed: Registered, key: ECKey, clock: FrozenClock
) -> None:
    assert keyed.secret is None  # an app with keys has no secret
    answer = exchange(signed_in, keyed, assertion(keyed, key, clock))
    assert answer.status_code == 200, answer.text
    assert id_claims(signed_in, answer.json["id_token"], clock, keyed)["aud"] == keyed.client_id
    # The issuer is an audience too (RFC 7523 §3: the authorization server).
    again = token_request(
        signed_in,
        assertion(keyed, key, clock, aud=ISSUER),
        grant_type="refresh_token",
        refresh_token=answer.json["refresh_token"],
    )
    assert again.status_code == 200, again.text


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"aud": "https://elsewhere.example/token"}, "another audience"),
        ({"iss": "app_someone_else"}, "iss is not sub"),
        ({"exp": "later"}, "exp not a number"),
        ({"jti": ""}, "an empty jti"),
    ],
)
def test_an_assertion_with_wrong_claims_is_refused(
    signed_in: FlaskClient,
    keyed: Registered,
    key: ECKey,
    clock: FrozenClock,
    change: dict[str, Any],
    why: str,
) -> None:
    answer = exchange(signed_in, keyed, assertion(keyed, key, clock, **change))
    assert answer.status_code == 400, (why, answer.text)
    assert answer.json["error"] == "invalid_client", why


def test_an_assertion_signed_with_another_key_is_refused(
    signed_in: FlaskClient, keyed: Registered, clock: FrozenClock
) -> None:
    stranger = ECKey.generate_key("P-256", parameters={"kid": "app-key-1"})
    answer = exchange(signed_in, keyed, assertion(keyed, stranger, clock))
    assert answer.status_code == 400 and answer.json["error"] == "invalid_client"


def test_a_symmetric_assertion_is_refused(
    signed_in: FlaskClient, keyed: Registered, clock: FrozenClock
) -> None:
    secret = OctKey.generate_key(256)
    answer = exchange(signed_in, keyed, assertion(keyed, secret, clock, alg="HS256"))
    assert answer.status_code == 400 and answer.json["error"] == "invalid_client"


def test_a_replayed_jti_is_refused(
    signed_in: FlaskClient, keyed: Registered, key: ECKey, clock: FrozenClock
) -> None:
    signed = assertion(keyed, key, clock, jti="once-only")
    assert exchange(signed_in, keyed, signed).status_code == 200
    replay = exchange(signed_in, keyed, signed)
    assert replay.status_code == 400 and replay.json["error"] == "invalid_client"
    assert "used before" in replay.json["error_description"]
    # A new jti works.
    assert exchange(signed_in, keyed, assertion(keyed, key, clock)).status_code == 200


def test_spent_ids_are_purged_once_their_assertions_expire(
    signed_in: FlaskClient, keyed: Registered, key: ECKey, clock: FrozenClock, services: Services
) -> None:
    """`holdfast purge` clears the spent jtis of expired assertions (an app that stops
    asking would otherwise leave its last ones behind) and keeps those still live."""
    assert exchange(signed_in, keyed, assertion(keyed, key, clock, jti="spent")).status_code == 200
    now = clock.now()
    with services.session() as db:
        assert len(db.scalars(select(OidcAssertionJti)).all()) == 1
    kept = retention.purge(lambda: services.session(write=True), now=now)
    assert kept.assertion_ids == 0
    done = retention.purge(lambda: services.session(write=True), now=now + timedelta(minutes=11))
    assert done.assertion_ids == 1
    with services.session() as db:
        assert db.scalars(select(OidcAssertionJti)).all() == []


def test_an_expired_assertion_is_refused(
    signed_in: FlaskClient, keyed: Registered, key: ECKey, clock: FrozenClock
) -> None:
    signed = assertion(keyed, key, clock)
    clock.advance(minutes=2)  # exp was 60 s ahead; the leeway is 30 s
    code, verifier = code_for(signed_in, keyed)
    answer = token_request(
        signed_in,
        signed,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )
    assert answer.status_code == 400 and answer.json["error"] == "invalid_client"


def test_an_assertion_living_too_long_is_refused(
    signed_in: FlaskClient, keyed: Registered, key: ECKey, clock: FrozenClock
) -> None:
    far = int(clock.now().timestamp()) + 3600
    answer = exchange(signed_in, keyed, assertion(keyed, key, clock, exp=far))
    assert answer.status_code == 400 and "too long" in answer.json["error_description"]


def test_an_app_with_keys_cannot_use_a_secret_and_a_secret_app_cannot_use_keys(
    signed_in: FlaskClient,
    keyed: Registered,
    key: ECKey,
    services: Services,
    clock: FrozenClock,
) -> None:
    code, verifier = code_for(signed_in, keyed)
    guessed = Registered(keyed.client_id, "hfcs_guess")
    answer = signed_in.post(
        "/oidc/acme/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        headers=basic(guessed),
    )
    assert answer.status_code == 401 and answer.json["error"] == "invalid_client"
    with_secret = register(services, clock, name="Secret app")
    refused = exchange(signed_in, with_secret, assertion(with_secret, key, clock))
    assert refused.status_code == 400 and refused.json["error"] == "invalid_client"


def test_keys_are_registered_by_the_cli_and_the_api_and_checked(
    app: Any,
    client: FlaskClient,
    mailbox: Any,
    admin: Any,
    key: ECKey,
    tmp_path: Any,
    services: Services,
) -> None:
    import json

    from app.models import OidcClient
    from testkit.api import assert_error, bearer, token_for

    public = {"keys": [key.as_dict(private=False)]}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(public))
    result = app.test_cli_runner().invoke(
        args=[
            "oidc", "client", "add", "--tenant", "acme", "--name", "Keyed",
            "--redirect-uri", REDIRECT, "--jwks-file", str(path), "--json",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["client_secret"] is None
    with services.session() as db:
        assert db.get_one(OidcClient, printed["client_id"]).auth_method == "private_key_jwt"
    listed = app.test_cli_runner().invoke(args=["oidc", "client", "list", "--tenant", "acme"])
    assert f"{printed['client_id']}\tprivate_key_jwt\tKeyed" in listed.output
    rotate = app.test_cli_runner().invoke(
        args=["oidc", "client", "rotate-secret", "--tenant", "acme", printed["client_id"]]
    )
    assert rotate.exit_code == 1 and "it has no secret" in rotate.output

    headers = bearer(token_for(client, mailbox, admin.email))
    body = {"name": "Keyed", "redirectUris": [REDIRECT], "jwks": public}
    made = client.post("/api/admin/apps", json=body, headers=headers)
    assert made.status_code == 201, made.text
    assert made.json["tokenEndpointAuthMethod"] == "private_key_jwt"
    assert made.json["clientSecret"] is None and made.json["public"] is False
    private = {"keys": [key.as_dict(private=True)]}
    for bad in (private, {"keys": []}, {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, {"x": 1}):
        refused = client.post("/api/admin/apps", json={**body, "jwks": bad}, headers=headers)
        assert assert_error(refused, 422, "validation_error")["field"] == "jwks"
    # New keys for a keyed app (rotation); a secret app cannot switch to keys.
    other = ECKey.generate_key("P-256", parameters={"kid": "app-key-2"})
    rotated = client.patch(
        f"/api/admin/apps/{made.json['clientId']}",
        json={"jwks": {"keys": [other.as_dict(private=False)]}},
        headers=headers,
    )
    assert rotated.status_code == 200, rotated.text
    with services.session() as db:
        row = db.get_one(OidcClient, made.json["clientId"])
        assert row.jwks is not None and row.jwks["keys"][0]["kid"] == "app-key-2"
    plain = client.post("/api/admin/apps", json={**body, "jwks": None}, headers=headers).json
    switch = client.patch(
        f"/api/admin/apps/{plain['clientId']}", json={"jwks": public}, headers=headers
    )
    assert assert_error(switch, 422, "validation_error")["field"] == "jwks"
