"""OpenID Connect from the relying party's side, for the OIDC tests: registering an app, PKCE, the
authorization request, the code exchange, refreshing, userinfo and introspection."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from app.clock import FrozenClock
from app.core import oidc_clients
from app.models import Tenant
from app.services import Services

ISSUER = "http://localhost/oidc/acme"
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


REDIRECT = "https://app.example/callback"


@dataclass
class Registered:
    client_id: str
    secret: str | None


def register(
    services: Services, clock: FrozenClock, slug: str = "acme", **options: Any
) -> Registered:
    with services.session(write=True) as db:
        tenant = db.scalar(select(Tenant).where(Tenant.slug == slug))
        assert tenant is not None
        made = oidc_clients.add_client(
            db,
            services.hasher,
            tenant,
            name=options.pop("name", "Grafana"),
            redirect_uris=options.pop("redirect_uris", [REDIRECT]),
            now=clock.now(),
            **options,
        )
        db.commit()
        return Registered(made.client.id, made.secret)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def basic(app: Registered) -> dict[str, str]:
    raw = f"{app.client_id}:{app.secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def authorize(
    client: FlaskClient, app: Registered, issuer_path: str = "/oidc/acme", **extra: str
) -> Any:
    params = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT,
        "scope": "openid email profile",
        "state": "st-123",
        "nonce": secrets.token_urlsafe(8),
        **extra,
    }
    return client.get(f"{issuer_path}/authorize?{urlencode(params)}")


def code_from(response: Any) -> str:
    assert response.status_code == 302, response.text
    location = urlsplit(response.location)
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["st-123"]
    return query["code"][0]


def exchange(
    client: FlaskClient, app: Registered, code: str, verifier: str | None, **extra: str
) -> Any:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, **extra}
    if verifier is not None:
        data["code_verifier"] = verifier
    headers = basic(app) if app.secret else {}
    if not app.secret:
        data["client_id"] = app.client_id
    return client.post("/oidc/acme/token", data=data, headers=headers)


def id_claims(
    client: FlaskClient, token: str, clock: FrozenClock, app: Registered
) -> dict[str, Any]:
    keys = KeySet.import_key_set(client.get("/oidc/acme/jwks").json)
    decoded = jwt.decode(token, keys, algorithms=["ES256"])
    registry = jwt.JWTClaimsRegistry(
        now=int(clock.now().timestamp()),
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": app.client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    )
    registry.validate(decoded.claims)
    assert decoded.header["alg"] == "ES256"
    return decoded.claims


def sign_in_app(client: FlaskClient, app: Registered) -> dict[str, Any]:
    verifier, challenge = pkce()
    code = code_from(authorize(client, app, code_challenge=challenge, code_challenge_method="S256"))
    answer = exchange(client, app, code, verifier)
    assert answer.status_code == 200, answer.text
    return answer.json  # type: ignore[no-any-return]


def refresh(client: FlaskClient, app: Registered, refresh_token: str) -> Any:
    return client.post(
        "/oidc/acme/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        headers=basic(app),
    )


def userinfo(client: FlaskClient, access_token: str) -> int:
    headers = {"Authorization": f"Bearer {access_token}"}
    return client.get("/oidc/acme/userinfo", headers=headers).status_code


def introspect(client: FlaskClient, app: Registered, token: str) -> dict[str, Any]:
    answer = client.post("/oidc/acme/introspect", data={"token": token}, headers=basic(app))
    assert answer.status_code == 200, answer.text
    return answer.json  # type: ignore[no-any-return]


def assert_dead(client: FlaskClient, app: Registered, tokens: dict[str, Any]) -> None:
    assert userinfo(client, tokens["access_token"]) == 401
    assert introspect(client, app, tokens["access_token"]) == {"active": False}
    answer = refresh(client, app, tokens["refresh_token"])
    assert answer.status_code == 400 and answer.json["error"] == "invalid_grant"


# --- back-channel logout, from the app's side --------------------------------------------


class Receiver:
    """An app's back-channel logout endpoint on 127.0.0.1: records each POST, answers
    ``status``."""

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


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A :class:`Receiver`, served in a thread while the block runs."""
    found = Receiver()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found.server.shutdown()
        thread.join(timeout=5)


def logout_claims(
    client: FlaskClient, token: str, clock: FrozenClock, app: Registered
) -> dict[str, Any]:
    """The claims of a logout token, checked as Back-Channel Logout 1.0 §2.6 says an app
    must (signature against the issuer's JWKS, typ, iss, aud, iat, jti, sid, events, no
    nonce)."""
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
