"""Session tokens from the outside: forged and bent tokens are refused by a real endpoint,
an issued token verifies offline against the JWKS with a second JOSE library (joserfc),
and `holdfast keys rotate` works both ways."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select

from app.models import Event, UserSession
from app.tokens import AUDIENCE, TOKEN_TYPE
from testkit.api import api_sign_in, assert_error, bearer, post_json, token_for
from testkit.sql import statements_run
from testkit.values import UA_IPAD

CLAIMS = {"iss", "aud", "sub", "tid", "sid", "iat", "exp", "jti"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return json.loads(unb64(header)), json.loads(unb64(payload)), signature


def assemble(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(signature)}"


class Forger:
    """Makes tokens that are right in every way but one. It signs with Holdfast's own
    current key (read from the key ring: the point is that a valid signature must not be
    enough when a header or claim is wrong)."""

    def __init__(self, services: Any, good_token: str) -> None:
        services.keys.reload()
        self.key = services.keys.signing_key(services.clock.now())  # the real signing key
        self.header, self.claims, _ = parts(good_token)

    def sign(self, *, header: dict[str, Any] | None = None, **claims: Any) -> str:
        return jwt.encode(
            {**self.claims, **claims},
            self.key.private,
            algorithm="ES256",
            headers={**self.header, **(header or {})},
        )

    def public_pem(self) -> bytes:
        return self.key.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@pytest.fixture
def issued(client, mailbox, member, services):
    answer = api_sign_in(client, mailbox, member.email)
    assert answer.status_code == 201
    return answer.json


@pytest.fixture
def forger(services, issued):
    return Forger(services, issued["token"])


def refused(client, token: str, code: str = "invalid_session") -> None:
    for path in ("/api/auth/session", "/api/auth/sessions"):
        assert_error(client.get(path, headers=bearer(token)), 401, code)
    assert client.get("/auth/verify", headers=bearer(token)).status_code == 401


def test_the_forger_makes_good_tokens_when_nothing_is_bent(client, forger):
    """The control: every attack below changes exactly one thing from this."""
    assert client.get("/api/auth/session", headers=bearer(forger.sign())).status_code == 200


def test_claims_carry_ids_only(issued, member):
    header, claims, _ = parts(issued["token"])
    assert set(claims) == CLAIMS
    assert claims["sub"] == member.id and claims["sid"] == issued["sessionId"]
    assert claims["aud"] == AUDIENCE and claims["iss"] == "http://localhost"
    assert member.email not in json.dumps(claims)
    assert header["alg"] == "ES256" and header["typ"] == TOKEN_TYPE and header["kid"]


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_in_any_case_is_refused(client, issued, alg):
    header, claims, signature = parts(issued["token"])
    refused(client, assemble({**header, "alg": alg}, claims))
    refused(client, assemble({**header, "alg": alg}, claims) + signature)


def test_a_tampered_payload_is_refused(client, app, mailbox, make, tenant, issued):
    other = api_sign_in(
        app.test_client(), mailbox, make.user("kim@acme.test", tenant).email, user_agent=UA_IPAD
    ).json
    header, claims, signature = parts(issued["token"])
    _, other_claims, _ = parts(other["token"])
    hijack = {**claims, "sub": other_claims["sub"], "sid": other_claims["sid"]}
    refused(client, f"{assemble(header, hijack).rsplit('.', 1)[0]}.{signature}")
    longer = {**claims, "exp": claims["exp"] + 86400}
    refused(client, f"{assemble(header, longer).rsplit('.', 1)[0]}.{signature}")


def test_hs256_signed_with_the_public_key_is_refused(client, forger):
    header = {**forger.header, "alg": "HS256"}
    for secret in (forger.public_pem(), forger.public_pem().strip()):
        unsigned = assemble(header, forger.claims).rsplit(".", 1)[0]
        mac = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
        refused(client, f"{unsigned}.{b64(mac)}")


def test_an_unknown_kid_is_refused(client, forger):
    refused(client, forger.sign(header={"kid": "not-a-key"}))
    stranger = ec.generate_private_key(ec.SECP256R1())
    refused(
        client,
        jwt.encode(
            forger.claims,
            stranger,
            algorithm="ES256",
            headers={**forger.header, "kid": "not-a-key"},
        ),
    )
    # Someone else's key under Holdfast's kid does not verify either.
    refused(client, jwt.encode(forger.claims, stranger, algorithm="ES256", headers=forger.header))


@pytest.mark.parametrize(
    "extra",
    [
        {"jku": "https://evil.test/jwks.json"},
        {"x5u": "https://evil.test/cert.pem"},
        {"jwk": {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}},
        {"x5c": ["MIIB"]},
    ],
)
def test_headers_naming_other_keys_are_refused(client, forger, extra):
    refused(client, forger.sign(header=extra))


@pytest.mark.parametrize(
    ("bent", "header"),
    [
        ({"iss": "https://evil.test"}, None),
        ({"aud": "someone-else"}, None),
        ({"aud": ["someone-else"]}, None),
        ({}, {"typ": "JWT"}),
        ({}, {"typ": "at+jwt"}),
    ],
)
def test_wrong_issuer_audience_or_type_is_refused(client, forger, bent, header):
    refused(client, forger.sign(header=header, **bent))


def test_missing_claims_are_refused(client, forger):
    for name in ("sid", "exp", "jti"):
        claims = {k: v for k, v in forger.claims.items() if k != name}
        token = jwt.encode(claims, forger.key.private, algorithm="ES256", headers=forger.header)
        refused(client, token)


def test_an_expired_token_answers_session_expired(client, forger, clock):
    expired = forger.sign(exp=int(clock.now().timestamp()) - 1)
    refused(client, expired, code="session_expired")
    assert_error(client.get("/api/auth/session", headers=bearer(expired)), 401, "session_expired")


def test_garbage_is_refused(client):
    for token in ("", "a.b", "a.b.c", "x" * 5000, "é.é.é", "eyJhbGciOiJFUzI1NiJ9..."):
        answer = client.get("/api/auth/session", headers=bearer(token))
        assert_error(answer, 401, "invalid_session")


# --- offline verification with a second library ------------------------------------------------


def test_an_issued_token_verifies_offline_with_joserfc(client, issued, member, tenant, clock):
    jwks = client.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    assert all({"kid", "alg", "use"} <= key.keys() for key in jwks.json["keys"])
    assert all(key["alg"] == "ES256" and key["use"] == "sig" for key in jwks.json["keys"])
    assert not any("d" in key for key in jwks.json["keys"])  # public halves only
    keys = KeySet.import_key_set(jwks.json)

    token = jose_jwt.decode(issued["token"], keys, algorithms=["ES256"])
    assert token.header["typ"] == TOKEN_TYPE
    registry = jose_jwt.JWTClaimsRegistry(
        now=int(clock.now().timestamp()),
        iss={"essential": True, "value": "http://localhost"},
        aud={"essential": True, "value": AUDIENCE},
        sub={"essential": True},
        sid={"essential": True},
        exp={"essential": True},
    )
    registry.validate(token.claims)
    assert (token.claims["sub"], token.claims["tid"], token.claims["sid"]) == (
        member.id,
        tenant.id,
        issued["sessionId"],
    )

    # The same library refuses a bent token and, after exp, the genuine one.
    header, claims, signature = parts(issued["token"])
    bent = f"{assemble(header, {**claims, 'sub': 'usr_other'}).rsplit('.', 1)[0]}.{signature}"
    with pytest.raises(JoseError):
        jose_jwt.decode(bent, keys, algorithms=["ES256"])
    late = jose_jwt.JWTClaimsRegistry(now=claims["exp"] + 1, exp={"essential": True})
    with pytest.raises(JoseError):
        late.validate(token.claims)


def test_pyjwt_recipe_from_the_docs_verifies_a_token(live_server, live_make, mailbox):
    """The recipe in docs/api.md, as written: PyJWKClient on the JWKS URL, then decode with
    the algorithm, audience and issuer pinned. Against a server on the real clock."""
    tenant = live_make.tenant("offline")
    live_make.user("ola@offline.test", tenant)
    challenge = post_json(f"{live_server}/api/auth/login", {"email": "ola@offline.test"})
    issued = post_json(
        f"{live_server}/api/auth/verify",
        {"challengeId": challenge["challengeId"], "code": mailbox.last_code("ola@offline.test")},
    )

    jwks = jwt.PyJWKClient(f"{live_server}/.well-known/jwks.json")
    assert jwt.get_unverified_header(issued["token"]).get("typ") == "hf-session+jwt"
    signing_key = jwks.get_signing_key_from_jwt(issued["token"])
    claims = jwt.decode(
        issued["token"],
        signing_key.key,
        algorithms=["ES256"],
        audience="holdfast",
        issuer="http://localhost",
        options={"require": ["exp", "iss", "aud", "sub", "sid"]},
    )
    assert claims["sid"] == issued["sessionId"]
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(
            issued["token"],
            signing_key.key,
            algorithms=["ES256"],
            audience="other",
            issuer="http://localhost",
        )


# --- key rotation ------------------------------------------------------------------------------


def kids(client) -> set[str]:
    return {key["kid"] for key in client.get("/.well-known/jwks.json").json["keys"]}


def kid_of(token: str) -> str:
    return parts(token)[0]["kid"]


def rotated_events(services) -> list[Event]:
    with services.session() as db:
        return list(db.scalars(select(Event).where(Event.kind == "keys.rotated")))


def test_keys_rotate_publishes_the_new_key_before_it_signs(
    app, client, mailbox, member, services, clock
):
    """The timeline of docs/api.md: the new key is in the JWKS at once, tokens keep being
    signed with the old key for a reload interval plus the JWKS max-age (and half a
    minute), then with the new one; the old one verifies on until its tokens expire."""
    old = token_for(client, mailbox, member.email)
    old_kid = kid_of(old)
    assert kids(client) == {old_kid}

    result = app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "in the JWKS now, signing from 2026-03-02 09:06:30 UTC" in result.output
    [event] = rotated_events(services)
    new_kid = event.details["kid"]
    assert (event.details["ended_sessions"], event.details["sessions_ended"]) == (False, 0)
    assert event.details["signs_from"] == "2026-03-02T09:06:30+00:00"

    # Published at once, on every process: a fresh one (another node) shows it too.
    assert kids(client) == {old_kid, new_kid}
    services.keys.reload()
    assert kids(client) == {old_kid, new_kid}
    # Still signing with the old key until then ...
    clock.advance(seconds=389)
    during = token_for(app.test_client(), mailbox, member.email)
    assert kid_of(during) == old_kid
    # ... and with the new one from then on, without any reload.
    clock.advance(seconds=1)
    after = token_for(app.test_client(), mailbox, member.email)
    assert kid_of(after) == new_kid
    refreshed = client.post("/api/auth/session/extend", headers=bearer(old))
    assert kid_of(refreshed.json["token"]) == new_kid
    for token in (old, during, after):
        assert client.get("/api/auth/session", headers=bearer(token)).status_code == 200
    # The old key verifies as long as any of its tokens can live (the policy's longest
    # lifetime: 30 days on a trusted device), then leaves the JWKS.
    clock.advance(days=29)
    services.keys.reload()
    assert kids(client) == {old_kid, new_kid}
    clock.advance(days=1)
    services.keys.reload()
    assert kids(client) == {new_kid}


def test_the_jwks_may_be_cached_and_pages_may_not(client, signed_in):
    jwks = client.get("/.well-known/jwks.json")
    assert jwks.headers["Cache-Control"] == "public, max-age=300"
    assert signed_in.get("/devices").headers["Cache-Control"] == "no-store"
    assert client.get("/api/auth/session").headers["Cache-Control"] == "no-store"


def test_keys_rotate_end_sessions_signs_everyone_out(
    app, client, mailbox, member, make, services, clock
):
    globex = make.tenant("globex")
    gus = make.user("gus@globex.test", globex)
    emails = (member.email, member.email, gus.email)  # two sessions in one tenant, one in the other
    tokens = [token_for(app.test_client(), mailbox, email) for email in emails]
    result = app.test_cli_runner().invoke(args=["keys", "rotate", "--end-sessions"])
    assert result.exit_code == 0, result.output
    assert "Ended 3 sessions" in result.output

    for token in tokens:
        refused(client, token)
    with services.session() as db:
        rows = db.scalars(select(UserSession)).all()
        assert len(rows) == 3
        assert {(r.end_reason, r.ended_at) for r in rows} == {("keys_rotated", clock.now())}
    events = rotated_events(services)
    # One event per tenant, each counting that tenant's own sessions.
    assert sorted((e.tenant_id, e.details["sessions_ended"]) for e in events) == sorted(
        [(member.tenant_id, 2), (globex.id, 1)]
    )
    assert all(e.details["ended_sessions"] is True for e in events)
    # Signing in again works at once (with the old key until the new one is published
    # long enough), and with the new key after that.
    again = token_for(app.test_client(), mailbox, member.email)
    assert kid_of(again) == kid_of(tokens[0])
    assert client.get("/api/auth/session", headers=bearer(again)).status_code == 200
    clock.advance(minutes=7)
    fresh = token_for(app.test_client(), mailbox, member.email)
    assert kid_of(fresh) == events[0].details["kid"]
    assert client.get("/api/auth/session", headers=bearer(fresh)).status_code == 200


def test_a_leaked_key_stops_verifying_at_once(app, client, mailbox, member, services):
    old = token_for(app.test_client(), mailbox, member.email)
    result = app.test_cli_runner().invoke(args=["keys", "rotate", "--leaked"])
    assert result.exit_code == 0, result.output
    assert "Ended 1 sessions" in result.output
    [event] = rotated_events(services)
    assert event.details["leaked"] is True
    # A token the old key signed (or anyone holding it could forge) is refused, and the
    # key is gone from the JWKS; sign-ins get the new key straight away.
    refused(client, old)
    assert kids(client) == {event.details["kid"]}
    fresh = token_for(app.test_client(), mailbox, member.email)
    assert kid_of(fresh) == event.details["kid"]
    assert client.get("/api/auth/session", headers=bearer(fresh)).status_code == 200


def test_made_up_key_ids_do_not_reach_the_database_each_time(client, services):
    header = b64(json.dumps({"alg": "ES256", "typ": "hf-session+jwt", "kid": "nope"}).encode())
    forged = f"{header}.e30.c2ln"
    client.get("/auth/verify", headers={"Authorization": f"Bearer {forged}"})  # warm up
    with statements_run(services.database) as statements:
        for _ in range(50):
            answer = client.get("/auth/verify", headers={"Authorization": f"Bearer {forged}"})
            assert answer.status_code == 401
    assert len(statements) <= 4
