"""The JSON API contract: every route, its camelCase fields and its error codes, through
the Flask app with the real SMTP server for codes. Each behaviour checks the answer, the
stored state and the audit event where they apply."""

from __future__ import annotations

import base64
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.models import Device, Tenant
from testkit.api import CONTRACT, api_sign_in, ask_code, assert_error, bearer, token_for
from testkit.mail import outbox_drained
from testkit.rows import events_of
from testkit.rows import session_row as stored_session
from testkit.values import UA_IPAD


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


# --- sign-in -------------------------------------------------------------------------------


def test_login_answers_202_with_a_challenge_known_or_not(client, mailbox, member, services):
    known = client.post("/api/auth/login", json={"email": member.email})
    unknown = client.post("/api/auth/login", json={"email": "nobody@acme.test"})
    assert known.status_code == unknown.status_code == 202
    assert set(known.json) == set(unknown.json) == {"challengeId"}
    assert known.json["challengeId"] != unknown.json["challengeId"]
    mailbox.wait_for(member.email)
    outbox_drained(services)
    assert mailbox.to("nobody@acme.test") == []
    requested = events_of(services, "code.requested")
    assert [e.details["known"] for e in requested] == [True, False]


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        (
            {"data": "email=a@b.test", "content_type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
        ),
        ({"data": '{"email": ', "content_type": "application/json"}, 400, "bad_request"),
        ({"data": "", "content_type": "application/json"}, 400, "bad_request"),
        ({"json": ["sam@acme.test"]}, 400, "bad_request"),
        ({"json": {}}, 422, "validation_error"),
        ({"json": {"email": 42}}, 422, "validation_error"),
        ({"json": {"email": None}}, 422, "validation_error"),
        ({"json": {"email": "not an address"}}, 422, "validation_error"),
        ({"json": {"email": "x" * 400 + "@acme.test"}}, 422, "validation_error"),
        ({"json": {"email": "sam\u0000@acme.test"}}, 422, "validation_error"),
        (
            {"data": '{"email": "\\ud800@acme.test"}', "content_type": "application/json"},
            422,
            "validation_error",
        ),
        ({"json": {"email": "a@b.test", "pad": "x" * 70_000}}, 413, "payload_too_large"),
    ],
)
def test_login_refuses_bad_input_with_json_errors(client, kwargs, status, code):
    answer = client.post("/api/auth/login", **kwargs)
    body = assert_error(answer, status, code)
    if code == "validation_error":
        assert body["field"] == "email"


def test_login_is_rate_limited_per_email_and_per_ip(new_app):
    limited = new_app(RATELIMIT_CODES="2 per 10 minutes", RATELIMIT_CODES_PER_IP="4 per 10 minutes")
    client = limited.test_client()
    for _ in range(2):
        answer = client.post("/api/auth/login", json={"email": "a@acme.test"})
        assert answer.status_code == 202
        # Nothing about the budget on an answer that was served: no X-RateLimit-*, no
        # Retry-After (docs/api.md).
        assert not [name for name, _ in answer.headers.items() if "ratelimit" in name.lower()]
        assert "Retry-After" not in answer.headers
    refused = client.post("/api/auth/login", json={"email": "A@acme.test "})
    body = assert_error(refused, 429, "rate_limited")
    assert "this address" in body["error"]
    assert 0 < int(refused.headers["Retry-After"]) <= 600
    # Another address from the same client: the per-network budget (4) has one use left.
    assert client.post("/api/auth/login", json={"email": "b@acme.test"}).status_code == 202
    body = assert_error(
        client.post("/api/auth/login", json={"email": "c@acme.test"}), 429, "rate_limited"
    )
    assert "your network" in body["error"]


def test_verify_starts_a_session_with_the_clients_options(client, mailbox, member, services, clock):
    answer = api_sign_in(
        client,
        mailbox,
        member.email,
        user_agent=UA_IPAD,
        deviceId="install-1234567890",
        deviceName="Sam's iPad app",
        deviceType="tablet",
        expiresIn=3600,
        extendOnActivity=False,
    )
    assert answer.status_code == 201, answer.text
    body = answer.json
    assert {"sessionId", "token", "expiresAt", "deviceInfo"} <= body.keys()
    assert "deviceId" not in body  # the client sent its own
    assert body["deviceInfo"] == {
        "id": body["deviceInfo"]["id"],
        "name": "Sam's iPad app",
        "type": "tablet",
        "os": "iOS",
        "browser": "Safari",
        "trusted": False,
        "isNew": True,
    }
    # The idle timeout (30 min) comes before the hour asked for.
    assert body["expiresAt"] == (clock.now() + timedelta(minutes=30)).isoformat().replace(
        "+00:00", "Z"
    )
    stored = stored_session(services, body["sessionId"])
    assert stored.absolute_deadline == clock.now() + timedelta(hours=1)
    assert stored.extend_on_activity is False
    assert stored.user_id == member.id
    assert services.keys.verify(body["token"], clock.now()).session_id == body["sessionId"]
    created = events_of(services, "session.created")
    assert [e.session_id for e in created] == [body["sessionId"]]

    status = client.get("/api/auth/session", headers=bearer(body["token"]))
    assert status.status_code == 200
    assert status.json["sessionId"] == body["sessionId"]


def test_verify_hands_out_a_device_id_that_recognises_the_device_next_time(app, mailbox, member):
    first_client, second_client = app.test_client(), app.test_client()
    first = api_sign_in(first_client, mailbox, member.email)
    assert first.status_code == 201
    device_id = first.json["deviceId"]
    assert len(device_id) >= 32 and first.json["deviceInfo"]["isNew"] is True
    # Another client (no device cookie) that sends the deviceId is the same device.
    again = api_sign_in(second_client, mailbox, member.email, deviceId=device_id)
    assert again.status_code == 201
    assert again.json["deviceInfo"]["id"] == first.json["deviceInfo"]["id"]
    assert again.json["deviceInfo"]["isNew"] is False
    assert "deviceId" not in again.json


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"expiresIn": "3600"}, "expiresIn"),
        ({"expiresIn": 10}, "expiresIn"),
        ({"expiresIn": True}, "expiresIn"),
        ({"expiresIn": 3600.5}, "expiresIn"),
        ({"extendOnActivity": "yes"}, "extendOnActivity"),
        ({"deviceType": "car"}, "deviceType"),
        ({"deviceType": 3}, "deviceType"),
        ({"deviceName": ["x"]}, "deviceName"),
        ({"deviceId": "d" * 201}, "deviceId"),
        ({"code": 123456}, "code"),
        ({"challengeId": None}, "challengeId"),
    ],
)
def test_verify_refuses_wrong_types_naming_the_field(
    client, mailbox, member, services, extra, field
):
    challenge, code = ask_code(client, mailbox, member.email)
    answer = client.post("/api/auth/verify", json={"challengeId": challenge, "code": code, **extra})
    assert assert_error(answer, 422, "validation_error")["field"] == field
    # The code was not used up by the refused request.
    ok = client.post("/api/auth/verify", json={"challengeId": challenge, "code": code})
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize("typed", ["12", "abcdef", "\uff11\uff12\uff13\uff14\uff15\uff16"])
def test_verify_refuses_what_cannot_be_a_code_without_counting_it(
    client, mailbox, member, services, typed
):
    challenge, code = ask_code(client, mailbox, member.email)
    for _ in range(6):  # more than the five tries a code has
        answer = client.post("/api/auth/verify", json={"challengeId": challenge, "code": typed})
        body = assert_error(answer, 422, "validation_error")
        assert body["field"] == "code" and "6 digits" in body["error"]
    assert events_of(services, "code.failed") == []
    ok = client.post("/api/auth/verify", json={"challengeId": challenge, "code": code})
    assert ok.status_code == 201, ok.text


def test_verify_wrong_codes_then_locked(client, mailbox, member, services):
    challenge, code = ask_code(client, mailbox, member.email)
    for _ in range(4):
        answer = client.post(
            "/api/auth/verify", json={"challengeId": challenge, "code": wrong(code)}
        )
        assert_error(answer, 400, "invalid_code")
    locked = client.post("/api/auth/verify", json={"challengeId": challenge, "code": wrong(code)})
    assert_error(locked, 400, "challenge_locked")
    right = client.post("/api/auth/verify", json={"challengeId": challenge, "code": code})
    assert_error(right, 400, "challenge_locked")
    assert len(events_of(services, "code.failed")) == 5
    assert events_of(services, "session.created") == []
    unknown = client.post("/api/auth/verify", json={"challengeId": "chl_nope", "code": "123456"})
    assert_error(unknown, 400, "invalid_code")


def test_verify_in_deny_mode_lists_sessions_and_accepts_end_session_id(
    app, mailbox, member, make, tenant, services
):
    make.policy(tenant, max_sessions_per_user=1, limit_mode="deny")
    first = api_sign_in(app.test_client(), mailbox, member.email)
    assert first.status_code == 201
    client = app.test_client()
    challenge, code = ask_code(client, mailbox, member.email)
    refused = client.post("/api/auth/verify", json={"challengeId": challenge, "code": code})
    body = assert_error(refused, 409, "session_limit_reached")
    assert [s["id"] for s in body["sessions"]] == [first.json["sessionId"]]
    assert body["alsoEnds"] == 0
    assert body["sessions"][0]["device"] == "Chrome on macOS"
    assert {"deviceType", "os", "browser", "ip", "createdAt", "lastActive", "expiresAt"} <= (
        body["sessions"][0].keys()
    )
    # The same code, naming the session to give up.
    swapped = client.post(
        "/api/auth/verify",
        json={"challengeId": challenge, "code": code, "endSessionId": first.json["sessionId"]},
    )
    assert swapped.status_code == 201, swapped.text
    old = stored_session(services, first.json["sessionId"])
    assert old.end_reason == "revoked_by_user"
    assert_error(
        client.get("/api/auth/session", headers=bearer(first.json["token"])), 401, "invalid_session"
    )


# --- the caller's session --------------------------------------------------------------------


def test_status_without_a_session_is_401_not_valid(client):
    answer = client.get("/api/auth/session")
    assert assert_error(answer, 401, "invalid_session")["valid"] is False
    garbage = client.get("/api/auth/session", headers=bearer("not.a.token"))
    assert assert_error(garbage, 401, "invalid_session")["valid"] is False


def test_status_is_not_activity_but_extend_is(client, mailbox, member, services, clock):
    token = token_for(client, mailbox, member.email)
    start = clock.now()
    clock.advance(minutes=5)
    status = client.get("/api/auth/session", headers=bearer(token))
    assert status.status_code == 200
    assert status.json["expiresIn"] == 25 * 60
    assert status.json["deviceCount"] == 1
    sid = status.json["sessionId"]
    assert stored_session(services, sid).last_seen_at == start

    extended = client.post("/api/auth/session/extend", headers=bearer(token))
    assert extended.status_code == 200, extended.text
    assert set(extended.json) == {"token", "expiresAt", "expiresIn"}
    assert extended.json["expiresIn"] == 30 * 60
    assert stored_session(services, sid).last_seen_at == clock.now()
    fresh = extended.json["token"]
    assert fresh != token
    claims = services.keys.verify(fresh, clock.now())
    assert claims.session_id == sid
    assert claims.expires_at == services.keys.verify(token, clock.now()).expires_at
    # Both tokens name the same live session.
    assert client.get("/api/auth/session", headers=bearer(token)).status_code == 200


def test_an_idle_session_answers_session_expired(client, mailbox, member, services, clock):
    token = token_for(client, mailbox, member.email)
    clock.advance(minutes=31)
    answer = client.get("/api/auth/sessions", headers=bearer(token))
    assert_error(answer, 401, "session_expired")
    sid = services.keys.verify(token, clock.now()).session_id
    assert stored_session(services, sid).end_reason == "idle_expired"


def test_logout_ends_the_current_session(client, mailbox, member, services):
    answer = api_sign_in(client, mailbox, member.email)
    token, sid = answer.json["token"], answer.json["sessionId"]
    out = client.post("/api/auth/logout", headers=bearer(token))
    assert out.status_code == 204
    assert stored_session(services, sid).end_reason == "logout"
    ended = events_of(services, "session.ended")
    assert [(e.session_id, e.details["reason"], e.actor_id) for e in ended] == [
        (sid, "logout", member.id)
    ]
    assert_error(client.get("/api/auth/session", headers=bearer(token)), 401, "invalid_session")
    assert_error(client.post("/api/auth/logout", headers=bearer(token)), 401, "invalid_session")


def test_sessions_lists_the_callers_live_sessions(app, mailbox, member, make, tenant):
    phone = api_sign_in(
        app.test_client(), mailbox, member.email, user_agent=UA_IPAD, deviceName="Sam's iPad"
    )
    desk = api_sign_in(app.test_client(), mailbox, member.email)
    other = make.user("kim@acme.test", tenant)
    api_sign_in(app.test_client(), mailbox, other.email)
    client = app.test_client()
    listed = client.get("/api/auth/sessions", headers=bearer(desk.json["token"]))
    assert listed.status_code == 200
    items = listed.json["sessions"]
    assert [s["id"] for s in items] == [desk.json["sessionId"], phone.json["sessionId"]]
    for item in items:
        assert set(item) == {
            "id",
            "device",
            "deviceType",
            "os",
            "browser",
            "ip",
            "location",
            "createdAt",
            "lastActive",
            "expiresAt",
            "current",
            "trusted",
        }
    assert items[0]["current"] is True and items[1]["current"] is False
    assert (items[1]["device"], items[1]["deviceType"], items[1]["os"]) == (
        "Sam's iPad",
        "tablet",
        "iOS",
    )
    assert items[0]["ip"] == "127.0.0.1"
    assert items[0]["createdAt"].endswith("Z")


def test_end_one_session_only_the_callers(app, mailbox, member, make, tenant, services):
    phone = api_sign_in(app.test_client(), mailbox, member.email, user_agent=UA_IPAD)
    desk = api_sign_in(app.test_client(), mailbox, member.email)
    other = api_sign_in(app.test_client(), mailbox, make.user("kim@acme.test", tenant).email)
    client = app.test_client()
    token = desk.json["token"]

    refused = client.delete(f"/api/auth/sessions/{other.json['sessionId']}", headers=bearer(token))
    assert_error(refused, 404, "not_found")
    assert stored_session(services, other.json["sessionId"]).ended_at is None
    assert_error(
        client.delete("/api/auth/sessions/sess_unknown", headers=bearer(token)), 404, "not_found"
    )
    assert_error(client.delete("/api/auth/sessions/x%00y", headers=bearer(token)), 404, "not_found")

    ended = client.delete(f"/api/auth/sessions/{phone.json['sessionId']}", headers=bearer(token))
    assert ended.status_code == 204
    assert stored_session(services, phone.json["sessionId"]).end_reason == "revoked_by_user"
    event = events_of(services, "session.ended")[-1]
    assert (event.session_id, event.actor_id) == (phone.json["sessionId"], member.id)
    assert_error(
        client.get("/api/auth/session", headers=bearer(phone.json["token"])), 401, "invalid_session"
    )
    assert client.get("/api/auth/session", headers=bearer(token)).status_code == 200


def test_end_all_other_sessions(app, mailbox, member, services):
    tokens = [api_sign_in(app.test_client(), mailbox, member.email).json for _ in range(3)]
    client = app.test_client()
    answer = client.delete("/api/auth/sessions/others", headers=bearer(tokens[-1]["token"]))
    assert answer.status_code == 200
    assert answer.json == {"revoked": 2}
    reasons = [stored_session(services, t["sessionId"]).end_reason for t in tokens]
    assert reasons == ["revoked_by_user", "revoked_by_user", None]
    again = client.delete("/api/auth/sessions/others", headers=bearer(tokens[-1]["token"]))
    assert again.json == {"revoked": 0}


# --- the API's CSRF rule for cookie clients --------------------------------------------------


def test_cookie_writes_need_json_and_this_origin(signed_in, services, clock):
    """signed_in holds the web sign-in's cookie; a second session is the target."""
    client = signed_in
    same = {"Origin": "http://localhost"}
    listed = client.get("/api/auth/sessions")  # reads need nothing extra
    assert listed.status_code == 200 and len(listed.json["sessions"]) == 1

    assert_error(
        client.delete("/api/auth/sessions/others", headers=same), 415, "unsupported_media_type"
    )
    assert_error(
        client.post("/api/auth/logout", data="{}", content_type="text/plain", headers=same),
        415,
        "unsupported_media_type",
    )
    for headers in (
        {"Origin": "https://evil.test"},
        {"Origin": "http://[::1"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost"},
        {},
    ):
        answer = client.post("/api/auth/logout", json={}, headers=headers)
        assert_error(answer, 403, "forbidden")
    sid = listed.json["sessions"][0]["id"]
    assert stored_session(services, sid).ended_at is None

    assert client.delete("/api/auth/sessions/others", json={}, headers=same).json == {"revoked": 0}
    assert (
        client.post(
            "/api/auth/session/extend", json={}, headers={"Sec-Fetch-Site": "same-origin"}
        ).status_code
        == 200
    )
    out = client.post("/api/auth/logout", json={}, headers=same)
    assert out.status_code == 204
    assert "holdfast_session=;" in out.headers["Set-Cookie"]
    assert stored_session(services, sid).end_reason == "logout"


def test_bearer_writes_need_no_csrf_token(client, mailbox, member):
    token = token_for(client, mailbox, member.email)
    answer = client.delete(
        "/api/auth/sessions/others", headers={**bearer(token), "Origin": "https://elsewhere.test"}
    )
    assert answer.status_code == 200 and answer.json == {"revoked": 0}


# --- any input, never HTML, never 500 ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/api/nothing/here", 404, "not_found"),
        ("POST", "/api/auth/sessions/x/y", 404, "not_found"),
        ("GET", "/api/auth/login", 405, "method_not_allowed"),
        ("PATCH", "/api/admin/policy", 405, "method_not_allowed"),
        ("GET", "/api/auth/sessions/others", 405, "method_not_allowed"),
    ],
)
def test_unknown_paths_and_methods_answer_json(client, method, path, status, code):
    answer = client.open(path, method=method)
    assert_error(answer, status, code)
    if status == 405:
        assert answer.headers["Allow"]


def test_huge_and_broken_bodies_on_every_json_route(client, mailbox, admin):
    token = token_for(client, mailbox, admin.email)
    huge = "{" + '"x": "' + "y" * 70_000 + '"}'
    ignored = client.delete(
        "/api/auth/sessions/others",
        data=huge,
        content_type="application/json",
        headers=bearer(token),
    )
    assert_error(ignored, 413, "payload_too_large")
    for method, path in (
        ("POST", "/api/auth/login"),
        ("POST", "/api/auth/verify"),
        ("PUT", "/api/admin/policy"),
        ("PUT", "/api/admin/retention"),
    ):
        answer = client.open(
            path, method=method, data=huge, content_type="application/json", headers=bearer(token)
        )
        assert_error(answer, 413, "payload_too_large")
        broken = client.open(
            path,
            method=method,
            data="{nope",
            content_type="application/json",
            headers=bearer(token),
        )
        assert_error(broken, 400, "bad_request")
        number = client.open(path, method=method, json=7, headers=bearer(token))
        assert_error(number, 400, "bad_request")
        deep = client.open(
            path,
            method=method,
            data="[" * 60_000,
            content_type="application/json",
            headers=bearer(token),
        )
        assert_error(deep, 400, "bad_request")


# --- tenant admins ---------------------------------------------------------------------------


@pytest.fixture
def two_tenants(app, mailbox, make, tenant, member, admin):
    """Acme (admin Ada, member Sam with two sessions) and Globex (member Gus)."""
    globex = make.tenant("globex")
    gus = make.user("gus@globex.test", globex)
    sam_ipad = api_sign_in(
        app.test_client(), mailbox, member.email, user_agent=UA_IPAD, deviceName="Sam's iPad"
    ).json
    sam_mac = api_sign_in(app.test_client(), mailbox, member.email).json
    gus_session = api_sign_in(app.test_client(), mailbox, gus.email).json
    ada = api_sign_in(app.test_client(), mailbox, admin.email).json
    return {
        "globex": globex,
        "gus": gus,
        "sam_ipad": sam_ipad,
        "sam_mac": sam_mac,
        "gus_session": gus_session,
        "ada": ada,
        "sam_token": sam_mac["token"],
    }


def test_admin_lists_only_its_tenants_sessions_with_their_people(
    client, two_tenants, member, admin, clock
):
    token = two_tenants["ada"]["token"]
    answer = client.get("/api/admin/sessions", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    items = answer.json["sessions"]
    assert answer.json["nextCursor"] is None
    ids = {s["id"] for s in items}
    assert ids == {two_tenants[k]["sessionId"] for k in ("sam_ipad", "sam_mac", "ada")}
    by_id = {s["id"]: s for s in items}
    ipad = by_id[two_tenants["sam_ipad"]["sessionId"]]
    assert ipad["user"] == {"id": member.id, "email": member.email, "name": None, "role": "member"}
    assert (ipad["device"], ipad["deviceType"], ipad["endedAt"], ipad["endReason"]) == (
        "Sam's iPad",
        "tablet",
        None,
        None,
    )
    assert by_id[two_tenants["ada"]["sessionId"]]["current"] is True

    only_sam = client.get(f"/api/admin/sessions?userId={member.id}&q=ipad", headers=bearer(token))
    assert [s["id"] for s in only_sam.json["sessions"]] == [two_tenants["sam_ipad"]["sessionId"]]
    gus = client.get(f"/api/admin/sessions?userId={two_tenants['gus'].id}", headers=bearer(token))
    assert gus.json == {"sessions": [], "nextCursor": None}


def test_admin_list_pages_with_a_keyset_cursor(client, two_tenants, clock):
    token = two_tenants["ada"]["token"]
    seen, cursor, pages = [], None, 0
    while True:
        query = "/api/admin/sessions?limit=1&sort=createdAt" + (
            f"&cursor={cursor}" if cursor else ""
        )
        page = client.get(query, headers=bearer(token))
        assert page.status_code == 200, page.text
        seen += [s["id"] for s in page.json["sessions"]]
        cursor, pages = page.json["nextCursor"], pages + 1
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 3


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("limit=201", "limit"),
        ("cursor=garbage", "cursor"),
        ("sort=ip", "sort"),
        ("status=gone", "status"),
        ("kind=car", "kind"),
        ("signedInFrom=yesterday", "signedInFrom"),
        ("q=" + "x" * 201, "q"),
        ("q=a%00b", "q"),
        ("signedInFrom=0001-01-01T00:00:00%2B01:00", "signedInFrom"),
        (
            "cursor=" + base64.urlsafe_b64encode(b'["0001-01-01T00:00:00+01:00", "x"]').decode(),
            "cursor",
        ),
    ],
)
def test_admin_list_refuses_bad_filters(client, mailbox, admin, query, field):
    token = token_for(client, mailbox, admin.email)
    answer = client.get(f"/api/admin/sessions?{query}", headers=bearer(token))
    assert assert_error(answer, 422, "validation_error")["field"] == field


def test_admin_routes_need_the_admin_role_and_a_fresh_sign_in(client, two_tenants, clock):
    member_token = two_tenants["sam_token"]
    routes = [
        ("GET", "/api/admin/sessions"),
        ("GET", "/api/admin/policy"),
        ("PUT", "/api/admin/policy"),
        ("GET", "/api/admin/retention"),
        ("PUT", "/api/admin/retention"),
        ("DELETE", f"/api/admin/sessions/{two_tenants['sam_ipad']['sessionId']}"),
        ("DELETE", f"/api/admin/users/{two_tenants['gus'].id}/sessions"),
    ]
    for method, path in routes:
        answer = client.open(path, method=method, json={}, headers=bearer(member_token))
        assert_error(answer, 403, "forbidden")
    clock.advance(minutes=16)
    for method, path in routes:
        answer = client.open(
            path, method=method, json={}, headers=bearer(two_tenants["ada"]["token"])
        )
        assert_error(answer, 401, "fresh_login_required")
    assert_error(client.get("/api/admin/sessions"), 401, "invalid_session")


def test_admin_ends_a_session_of_the_tenant_only(client, two_tenants, services, admin):
    token = two_tenants["ada"]["token"]
    target = two_tenants["sam_ipad"]["sessionId"]
    foreign = two_tenants["gus_session"]["sessionId"]
    assert_error(
        client.delete(f"/api/admin/sessions/{foreign}", headers=bearer(token)), 404, "not_found"
    )
    assert stored_session(services, foreign).ended_at is None
    answer = client.delete(f"/api/admin/sessions/{target}", headers=bearer(token))
    assert answer.status_code == 204
    assert stored_session(services, target).end_reason == "revoked_by_admin"
    event = events_of(services, "session.ended")[-1]
    assert (event.session_id, event.actor_id, event.details["reason"]) == (
        target,
        admin.id,
        "revoked_by_admin",
    )
    assert_error(
        client.get("/api/auth/session", headers=bearer(two_tenants["sam_ipad"]["token"])),
        401,
        "invalid_session",
    )


def test_admin_ends_all_sessions_of_a_person(client, two_tenants, services, member, admin):
    token = two_tenants["ada"]["token"]
    assert_error(
        client.delete(f"/api/admin/users/{two_tenants['gus'].id}/sessions", headers=bearer(token)),
        404,
        "not_found",
    )
    assert stored_session(services, two_tenants["gus_session"]["sessionId"]).ended_at is None
    answer = client.delete(f"/api/admin/users/{member.id}/sessions", headers=bearer(token))
    assert answer.status_code == 200 and answer.json == {"revoked": 2}
    for key in ("sam_ipad", "sam_mac"):
        assert stored_session(services, two_tenants[key]["sessionId"]).end_reason == (
            "revoked_by_admin"
        )
    summary = events_of(services, "user.sessions_ended")
    assert [(e.subject_id, e.actor_id, e.details["count"]) for e in summary] == [
        (member.id, admin.id, 2)
    ]
    assert client.get("/api/auth/session", headers=bearer(token)).status_code == 200


POLICY_FIELDS = (
    "idleTimeout",
    "absoluteLifetime",
    "extendOnActivity",
    "trustedLifetime",
    "trustedOutlivesAbsolute",
    "maxSessionsPerUser",
    "limitMode",
    "notifyNewDevice",
)


def test_admin_reads_and_changes_the_policy(client, mailbox, admin, tenant, services):
    token = token_for(client, mailbox, admin.email)
    policy = client.get("/api/admin/policy", headers=bearer(token))
    assert policy.status_code == 200
    # The contract's fields with their defaults (a later setting may add more).
    assert {name: policy.json[name] for name in POLICY_FIELDS} == {
        "idleTimeout": 1800,
        "absoluteLifetime": 43200,
        "extendOnActivity": True,
        "trustedLifetime": 30 * 86400,
        "trustedOutlivesAbsolute": True,
        "maxSessionsPerUser": 10,
        "limitMode": "evict_oldest",
        "notifyNewDevice": True,
    }
    changed = client.put(
        "/api/admin/policy", json={"idleTimeout": 600, "limitMode": "deny"}, headers=bearer(token)
    )
    assert changed.status_code == 200, changed.text
    assert changed.json == {**policy.json, "idleTimeout": 600, "limitMode": "deny"}
    with services.session() as db:
        row = db.get_one(Tenant, tenant.id)
        assert (row.idle_timeout, row.limit_mode) == (600, "deny")
    event = events_of(services, "policy.changed")[-1]
    assert event.actor_id == admin.id
    assert event.details["changes"]["idle_timeout"] == {"old": 1800, "new": 600}
    # An empty change answers the whole policy and writes nothing.
    same = client.put("/api/admin/policy", json={}, headers=bearer(token))
    assert same.json == changed.json
    assert len(events_of(services, "policy.changed")) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"idleTimeout": 10}, "idleTimeout"),
        ({"idleTimeout": "600"}, "idleTimeout"),
        ({"absoluteLifetime": 10**30}, "absoluteLifetime"),
        ({"limitMode": "random"}, "limitMode"),
        ({"extendOnActivity": 1}, "extendOnActivity"),
        ({"maxSessionsPerUser": True}, "maxSessionsPerUser"),
        ({"idleTimeout": 7200, "absoluteLifetime": 3600}, "idleTimeout"),
        ({"idle_timeout": 600}, "idle_timeout"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_policy_changes_are_validated_all_or_nothing(
    client, mailbox, admin, tenant, services, change, field
):
    token = token_for(client, mailbox, admin.email)
    answer = client.put(
        "/api/admin/policy", json={"notifyNewDevice": False, **change}, headers=bearer(token)
    )
    assert assert_error(answer, 422, "validation_error")["field"] == field
    with services.session() as db:
        row = db.get_one(Tenant, tenant.id)
        assert (row.notify_new_device, row.idle_timeout) == (True, 1800)
    assert events_of(services, "policy.changed") == []


def test_admin_reads_and_changes_the_retention_periods(client, mailbox, admin, tenant, services):
    token = token_for(client, mailbox, admin.email)
    periods = client.get("/api/admin/retention", headers=bearer(token))
    assert periods.status_code == 200
    assert periods.json == {
        "sessionsRetentionDays": 90,
        "eventsRetentionDays": 365,
        "ipAnonymiseDays": 30,
    }
    changed = client.put(
        "/api/admin/retention",
        json={"sessionsRetentionDays": 30, "ipAnonymiseDays": 7},
        headers=bearer(token),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json == {
        "sessionsRetentionDays": 30,
        "eventsRetentionDays": 365,
        "ipAnonymiseDays": 7,
    }
    with services.session() as db:
        row = db.get_one(Tenant, tenant.id)
        assert (row.sessions_retention_days, row.ip_anonymise_days) == (30, 7)
    event = events_of(services, "policy.changed")[-1]
    assert event.actor_id == admin.id
    assert event.details["changes"] == {
        "sessions_retention_days": {"old": 90, "new": 30},
        "ip_anonymise_days": {"old": 30, "new": 7},
    }
    # Asked again, the same answer; an empty change writes nothing.
    assert client.get("/api/admin/retention", headers=bearer(token)).json == changed.json
    same = client.put("/api/admin/retention", json={}, headers=bearer(token))
    assert same.json == changed.json
    assert len(events_of(services, "policy.changed")) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"eventsRetentionDays": 0}, "eventsRetentionDays"),
        ({"eventsRetentionDays": 3651}, "eventsRetentionDays"),
        ({"ipAnonymiseDays": "30"}, "ipAnonymiseDays"),
        ({"ipAnonymiseDays": 7.5}, "ipAnonymiseDays"),
        ({"sessionsRetentionDays": True}, "sessionsRetentionDays"),
        ({"sessionsRetentionDays": None}, "sessionsRetentionDays"),
        ({"sessions_retention_days": 30}, "sessions_retention_days"),
        ({"idleTimeout": 600}, "idleTimeout"),
    ],
)
def test_retention_changes_are_validated_all_or_nothing(
    client, mailbox, admin, tenant, services, change, field
):
    token = token_for(client, mailbox, admin.email)
    answer = client.put(
        "/api/admin/retention", json={"sessionsRetentionDays": 10, **change}, headers=bearer(token)
    )
    assert assert_error(answer, 422, "validation_error")["field"] == field
    with services.session() as db:
        row = db.get_one(Tenant, tenant.id)
        assert (row.sessions_retention_days, row.events_retention_days) == (90, 365)
    assert events_of(services, "policy.changed") == []


# --- the description ------------------------------------------------------------------------


def test_openapi_describes_every_route_of_the_contract(client, app):
    spec = client.get("/api/openapi.json")
    assert spec.status_code == 200
    document = spec.json
    assert document["openapi"].startswith("3.1")
    described = {(m, p) for p, methods in document["paths"].items() for m in methods}
    assert described == CONTRACT
    # ...and every described route exists in the app with that method.
    rules = {
        (
            m.lower(),
            r.rule.replace("<session_id>", "{sessionId}")
            .replace("<user_id>", "{userId}")
            .replace("<passkey_id>", "{passkeyId}")
            .replace("<client_id>", "{clientId}")
            .replace("<grant_id>", "{grantId}"),
        )
        for r in app.url_map.iter_rules()
        for m in r.methods
    }
    assert described <= rules
    policy_fields = document["components"]["schemas"]["Policy"]["properties"]
    assert policy_fields["idleTimeout"]["minimum"] == 60


def test_docs_page_renders_the_spec_without_inline_script(client):
    page = client.get("/api/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    for method, path in CONTRACT:
        assert f"{method.upper()} {path}" in page.text
    assert "session_limit_reached" in page.text or "deny mode" in page.text
    assert "<script>" not in page.text and "<script " not in page.text.replace('<script src="', "")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    example = client.get("/api/docs/example")
    assert example.status_code == 200
    # The page loads the script by its fingerprinted name; other sites by its plain one.
    loaded = re.search(r'<script src="(/static/js/holdfast-session\.\w{12}\.js)"', example.text)
    assert loaded is not None
    with client.get(loaded[1]) as script, client.get("/static/js/holdfast-session.js") as plain:
        assert script.status_code == plain.status_code == 200
        assert script.data == plain.data and b"HoldfastSession" in script.data


def test_device_rows_are_not_shared_between_clients_without_an_id(app, mailbox, member, services):
    """Two API clients that send no deviceId are two devices."""
    a = api_sign_in(app.test_client(), mailbox, member.email).json
    b = api_sign_in(app.test_client(), mailbox, member.email).json
    assert a["deviceInfo"]["id"] != b["deviceInfo"]["id"]
    with services.session() as db:
        assert len(db.scalars(select(Device).where(Device.user_id == member.id)).all()) == 2


def test_admin_api_honours_required_authenticator_app(client, mailbox, make, tenant, services):
    admin_user = make.user("root@acme.test", tenant, role="admin")
    token = token_for(client, mailbox, admin_user.email)  # signed in before the requirement
    make.policy(tenant, require_totp_for_admins=True)
    answer = client.put("/api/admin/policy", json={"idleTimeout": 3600}, headers=bearer(token))
    assert_error(answer, 403, "totp_required")
    # A new sign-in cannot even start without the app (added on the web).
    assert_error(api_sign_in(client, mailbox, admin_user.email), 403, "mfa_enrolment_required")
    with services.session() as db:
        assert db.get_one(Tenant, tenant.id).idle_timeout == 30 * 60


def test_nesting_is_measured_outside_strings_only():
    from app.web.json_input import _too_deep

    assert _too_deep(b"[" * 33)
    assert not _too_deep(b'{"a": "' + b"[" * 500 + b'"}')
    assert not _too_deep(b'{"a": "\\"' + b"{" * 500 + b'"}')
    assert _too_deep(b'{"a": "\\"", "b": ' + b"[" * 40 + b"]" * 40 + b"}")
