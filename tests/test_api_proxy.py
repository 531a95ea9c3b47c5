"""GET /auth/verify (the reverse-proxy check) and the JWKS, through the Flask app. The
real nginx in front is in test_proxy_nginx.py."""

from __future__ import annotations

import threading
from datetime import timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from app.core.session_check import SESSION_FACTS, TOUCH
from app.web.proxy import header_email
from testkit.api import api_sign_in, bearer
from testkit.rows import session_row as stored_session
from testkit.sql import statements_run, writes_in
from testkit.web import session_id_of


def test_verify_answers_identity_headers_for_a_live_cookie(
    signed_in, member, tenant, services, clock
):
    answer = signed_in.get("/auth/verify")
    assert answer.status_code == 200
    sid = session_id_of(signed_in, services, clock)
    assert answer.headers["X-Holdfast-User"] == member.id
    assert answer.headers["X-Holdfast-Email"] == member.email
    assert answer.headers["X-Holdfast-Tenant"] == tenant.id
    assert answer.headers["X-Holdfast-Session"] == sid
    assert answer.headers["X-Holdfast-Role"] == "member"
    assert answer.json == {"valid": True, "sessionId": sid}


@pytest.mark.parametrize(
    ("address", "sent"),
    [
        ("sam@acme.test", "sam@acme.test"),
        ("o'neil+news/x=y@acme.test", "o'neil+news/x=y@acme.test"),
        ("a%40b@acme.test", "a%2540b@acme.test"),  # used to go raw: unquote read a@b@…
        ("100%@acme.test", "100%25@acme.test"),
    ],
)
def test_the_email_header_has_one_encoding_for_every_address(
    app, mailbox, make, tenant, address, sent
):
    """X-Holdfast-Email is always the address percent-encoded as UTF-8 (all but letters,
    digits and !#$&'*+-./=?@^_`{|}~), so decoding it always gives the address back."""
    person = make.user(address, tenant)
    client = app.test_client()
    token = api_sign_in(client, mailbox, person.email).json["token"]
    answer = client.get("/auth/verify", headers=bearer(token))
    assert answer.status_code == 200
    assert answer.headers["X-Holdfast-Email"] == sent
    assert unquote(answer.headers["X-Holdfast-Email"], errors="strict") == person.email


def test_the_email_header_encodes_non_ascii_addresses_by_the_same_rule():
    for address, sent in (
        ("zoë@acme.test", "zo%C3%AB@acme.test"),
        ("用户@例子.test", "%E7%94%A8%E6%88%B7@%E4%BE%8B%E5%AD%90.test"),
        ("zoë%x@acme.test", "zo%C3%AB%25x@acme.test"),
    ):
        assert header_email(address) == sent
        assert unquote(sent, errors="strict") == address


def test_verify_accepts_a_bearer_token(client, mailbox, member):
    issued = api_sign_in(client, mailbox, member.email).json
    answer = client.get("/auth/verify", headers=bearer(issued["token"]))
    assert answer.status_code == 200
    assert answer.headers["X-Holdfast-Session"] == issued["sessionId"]


def test_a_validation_makes_no_orm_session_and_no_cookie(client, mailbox, member, services):
    """A validation that passes reads and touches through the plain connections alone
    (app.db.SessionOnDemand), and Flask's cookie session is neither opened nor sent."""
    token = api_sign_in(client, mailbox, member.email).json["token"]
    made = []
    make = services.session

    here = threading.current_thread()

    def counted(*, write: bool = False):
        session = make(write=write)
        if threading.current_thread() is here:  # not the mail sender's own sessions
            made.append((write, session))
        return session

    services.session = counted  # what each request's SessionOnDemand calls
    try:
        answer = client.get("/auth/verify", headers=bearer(token))
        assert answer.status_code == 200
        assert made == []
        assert "Set-Cookie" not in answer.headers
        assert "Cookie" not in answer.headers.get("Vary", "")
        # A view that needs the ORM makes the session once, scoped to the caller's tenant.
        assert client.get("/api/auth/sessions", headers=bearer(token)).status_code == 200
        [(write, session)] = made
        assert not write
        assert session.info["tenant_id"] == member.tenant_id
    finally:
        services.session = make


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Cookie": "holdfast_session=garbage"},
        {"Cookie": "holdfast_session=" + "x" * 5000},
    ],
)
def test_verify_is_401_without_a_live_session(client, headers):
    answer = client.get("/auth/verify", headers=headers)
    assert answer.status_code == 401
    assert answer.json["code"] == "invalid_session"
    assert "X-Holdfast-User" not in answer.headers
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert answer.headers["X-Holdfast-Reason"] in {"signed_out", "unknown"}


def test_verify_refuses_an_ended_session_on_the_next_request(signed_in, services, clock):
    assert signed_in.get("/auth/verify").status_code == 200
    sid = session_id_of(signed_in, services, clock)
    out = signed_in.post("/api/auth/logout", json={}, headers={"Origin": "http://localhost"})
    assert out.status_code == 204
    assert stored_session(services, sid).end_reason == "logout"
    signed_in.set_cookie("holdfast_session", "", max_age=0)  # the cookie the browser dropped
    assert signed_in.get("/auth/verify").status_code == 401


def test_a_validation_that_writes_nothing_opens_no_transaction(client, mailbox, member, services):
    """The hot path is one plain read (app.db.first_row): nothing goes through the ORM's
    engine, not even a BEGIN, until a request has something to write."""
    issued = api_sign_in(client, mailbox, member.email).json
    with statements_run(services.database.engine, begins=True) as seen:
        for _ in range(5):
            assert client.get("/auth/verify", headers=bearer(issued["token"])).status_code == 200
    assert seen == []


def test_a_validation_that_touches_writes_one_statement_committed_at_once(
    client, mailbox, member, services, clock
):
    """The throttled touch of a read-only request is one autocommit UPDATE on a plain
    connection (app.db.rows_changed): no BEGIN, SAVEPOINT or COMMIT on the ORM's engine,
    and the new last-seen time and idle deadline are stored when the answer leaves."""
    issued = api_sign_in(client, mailbox, member.email).json
    before = stored_session(services, issued["sessionId"])
    clock.advance(minutes=5)  # past the one-minute throttle: this validation touches
    with (
        statements_run(services.database.engine, begins=True) as orm,
        statements_run(services.database.plain) as plain,
    ):
        answer = client.get("/auth/verify", headers=bearer(issued["token"]))
    assert answer.status_code == 200
    assert orm == []
    assert writes_in(plain) == [TOUCH.compiled(services.database.plain.dialect).sql]
    after = stored_session(services, issued["sessionId"])
    assert after.last_seen_at == clock.now()
    assert after.idle_deadline == before.idle_deadline + timedelta(minutes=5)  # it slides


def test_a_write_request_touches_inside_its_transaction(client, mailbox, member, services, clock):
    """A request that writes touches in its own transaction (a plain connection would
    wait for the write lock that transaction holds on SQLite)."""
    issued = api_sign_in(client, mailbox, member.email).json
    clock.advance(minutes=5)
    with (
        statements_run(services.database.engine) as orm,
        statements_run(services.database.plain) as plain,
    ):
        extended = client.post(
            "/api/auth/session/extend",
            json={},
            headers={**bearer(issued["token"]), "Origin": "http://localhost"},
        )
    assert extended.status_code == 200
    assert writes_in(plain) == []
    savepoint = next(n for n, sql in enumerate(orm) if sql.startswith("SAVEPOINT"))
    assert writes_in(orm[savepoint:])[0].lstrip().upper().startswith("UPDATE SESSIONS")
    assert stored_session(services, issued["sessionId"]).last_seen_at == clock.now()


def test_a_request_that_writes_is_checked_inside_its_own_transaction(
    client, mailbox, member, services
):
    """A write request's session check runs in the transaction its writes will use (on
    SQLite under the write lock), so a revocation committed in between cannot slip past."""
    issued = api_sign_in(client, mailbox, member.email).json
    engine = services.database.engine
    with statements_run(engine, begins=True) as seen:
        extended = client.post(
            "/api/auth/session/extend",
            json={},
            headers={**bearer(issued["token"]), "Origin": "http://localhost"},
        )
    assert extended.status_code == 200
    # as the ORM session sends it (without the plain path's SQLite index hints)
    facts_sql = str(SESSION_FACTS.statement.compile(dialect=engine.dialect))
    assert facts_sql in seen, "the check read through the request's session"
    assert "BEGIN" in seen[: seen.index(facts_sql)]


def test_verify_counts_as_activity_by_the_throttled_rule(client, mailbox, member, services, clock):
    issued = api_sign_in(client, mailbox, member.email).json
    start = clock.now()
    clock.advance(seconds=30)  # within the one-minute throttle: nothing written
    assert client.get("/auth/verify", headers=bearer(issued["token"])).status_code == 200
    assert stored_session(services, issued["sessionId"]).last_seen_at == start
    clock.advance(minutes=20)
    assert client.get("/auth/verify", headers=bearer(issued["token"])).status_code == 200
    moved = stored_session(services, issued["sessionId"])
    assert moved.last_seen_at == clock.now()
    # 20.5 minutes in, the idle deadline moved to 30 minutes from now.
    clock.advance(minutes=25)
    assert client.get("/auth/verify", headers=bearer(issued["token"])).status_code == 200


def test_verify_says_401_for_an_expired_session(client, mailbox, member, services, clock):
    issued = api_sign_in(client, mailbox, member.email).json
    clock.advance(minutes=31)
    answer = client.get("/auth/verify", headers=bearer(issued["token"]))
    assert answer.status_code == 401
    assert answer.json["code"] == "session_expired"
    assert answer.headers["X-Holdfast-Reason"] == "idle_expired"  # for the proxy to pass on
    assert stored_session(services, issued["sessionId"]).end_reason == "idle_expired"


def sign_in_redirect(answer) -> dict[str, list[str]]:
    assert answer.status_code == 302, answer.data
    parts = urlsplit(answer.headers["Location"])
    assert parts.path == "/login"
    return parse_qs(parts.query)


def test_proxy_sign_in_sends_a_browser_back_to_the_whole_uri(client):
    """What nginx and Caddy cannot do: the refused request's URI, query and all, goes into
    next= encoded, and the reason the check gave is kept for the sign-in page."""
    answer = client.get(
        "/auth/sign-in",
        headers={
            "X-Forwarded-Uri": "/app/records?id=7&view=full",
            "X-Holdfast-Reason": "idle_expired",
        },
    )
    assert sign_in_redirect(answer) == {
        "next": ["/app/records?id=7&view=full"],
        "reason": ["idle_expired"],
    }
    page = client.get(answer.headers["Location"])
    assert "You were signed out after a period of inactivity." in page.text


@pytest.mark.parametrize(
    "uri",
    [None, "", "https://evil.test/x", "//evil.test/x", "/\\evil.test", "app/relative"],
)
def test_proxy_sign_in_drops_a_next_that_is_not_a_local_path(client, uri):
    headers = {"X-Holdfast-Reason": "<script>"}
    if uri is not None:
        headers["X-Forwarded-Uri"] = uri
    assert sign_in_redirect(client.get("/auth/sign-in", headers=headers)) == {}


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer not-a-token"}, {"Accept": "application/json"}],
)
def test_proxy_sign_in_tells_a_program_in_json(client, headers):
    answer = client.get("/auth/sign-in", headers={"X-Forwarded-Uri": "/app/x", **headers})
    assert answer.status_code == 401
    assert answer.json == {"error": "Sign in to continue", "code": "invalid_session"}
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="holdfast"'
    assert "Location" not in answer.headers


def test_proxy_sign_in_sends_htmx_to_the_sign_in_page(client):
    answer = client.get(
        "/auth/sign-in", headers={"X-Forwarded-Uri": "/app/x?a=1&b=2", "HX-Request": "true"}
    )
    assert answer.status_code == 204
    parts = urlsplit(answer.headers["HX-Redirect"])
    assert (parts.path, parse_qs(parts.query)) == ("/login", {"next": ["/app/x?a=1&b=2"]})


def test_a_bearer_client_on_a_page_gets_the_json_error_not_a_redirect(client):
    answer = client.get("/devices", headers=bearer("not-a-token"))
    assert answer.status_code == 401
    assert answer.json["code"] == "invalid_session"
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="holdfast"'


def test_jwks_publishes_the_public_signing_keys(client, services):
    answer = client.get("/.well-known/jwks.json")
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    keys = answer.json["keys"]
    assert len(keys) == 1
    assert set(keys[0]) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert (keys[0]["kty"], keys[0]["crv"], keys[0]["alg"], keys[0]["use"]) == (
        "EC",
        "P-256",
        "ES256",
        "sig",
    )
