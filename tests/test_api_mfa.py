"""The JSON API's second step (issue 21, finding 3): POST /api/auth/verify answers 401
mfa_required for a person with an authenticator app, and POST /api/auth/verify/mfa takes
the app's code or a recovery code; an admin who must first add an app is told so (403).
Codes come from pyotp, as the person's phone would show them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pyotp
import pytest
from sqlalchemy import func, select

from app.core import mfa
from app.mail import plain_text
from app.models import Challenge, Event, MfaChallenge, UserSession
from testkit.api import api_sign_in, ask_code, assert_error, bearer
from testkit.rows import give_app
from testkit.rows import session_row as stored_session


@pytest.fixture
def with_app(services, member):
    """The member with an authenticator app and ten recovery codes; (secret, codes)."""
    return give_app(services, member.id)


def app_code(secret, clock):
    return pyotp.TOTP(secret).at(clock.now())


def first_step(client, mailbox, email, **fields):
    answer = api_sign_in(client, mailbox, email, **fields)
    body = assert_error(answer, 401, "mfa_required")
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="holdfast"'
    return body


def test_the_emailed_code_alone_does_not_sign_in(client, mailbox, member, with_app, services):
    _secret, _codes = with_app
    body = first_step(
        client, mailbox, member.email, deviceName="Build box", deviceType="desktop", expiresIn=600
    )
    assert body["mfaChallengeId"].startswith("mfa_")
    assert body["methods"] == ["totp", "recovery_code"]
    assert body["expiresAt"] == "2026-03-02T09:10:00Z"
    with services.session() as db:
        assert db.scalar(select(func.count()).select_from(UserSession)) == 0
        assert db.scalars(select(Challenge)).one().consumed_at is not None  # used up
        step = db.scalars(select(MfaChallenge)).one()
        assert (step.purpose, step.user_id) == ("sign_in", member.id)
        assert step.options == {
            "device_name": "Build box",
            "device_kind": "desktop",
            "expires_in": 600,
        }


def test_the_app_code_finishes_the_sign_in_the_first_step_asked_for(
    app, client, mailbox, member, with_app, services, clock
):
    secret, _codes = with_app
    step = first_step(
        client,
        mailbox,
        member.email,
        deviceName="Build box",
        deviceType="desktop",
        expiresIn=600,
        extendOnActivity=False,
    )["mfaChallengeId"]
    answer = client.post(
        "/api/auth/verify/mfa", json={"mfaChallengeId": step, "code": app_code(secret, clock)}
    )
    assert answer.status_code == 201, answer.text
    body = answer.json
    assert body["deviceInfo"]["name"] == "Build box" and body["deviceInfo"]["type"] == "desktop"
    assert body["expiresAt"] == "2026-03-02T09:10:00Z"  # expiresIn from the first step
    assert "deviceId" in body  # a new device secret, as verify hands out
    status = client.get("/api/auth/session", headers=bearer(body["token"]))
    assert status.status_code == 200 and status.json["sessionId"] == body["sessionId"]
    session = stored_session(services, body["sessionId"])
    assert session.user_id == member.id
    assert session.extend_on_activity is False  # asked for at the first step
    # The step is used up, and so is the app's code.
    again = client.post(
        "/api/auth/verify/mfa", json={"mfaChallengeId": step, "code": app_code(secret, clock)}
    )
    assert_error(again, 400, "invalid_code")
    other = app.test_client()
    step2 = first_step(other, mailbox, member.email)["mfaChallengeId"]
    replay = other.post(
        "/api/auth/verify/mfa", json={"mfaChallengeId": step2, "code": app_code(secret, clock)}
    )
    assert_error(replay, 400, "invalid_code")


def test_a_recovery_code_works_once_and_is_mailed(
    app, client, mailbox, member, with_app, services, clock
):
    _secret, codes = with_app
    step = first_step(client, mailbox, member.email)["mfaChallengeId"]
    answer = client.post(
        "/api/auth/verify/mfa", json={"mfaChallengeId": step, "recoveryCode": codes[0]}
    )
    assert answer.status_code == 201, answer.text
    mail = [m for m in mailbox.wait_for(member.email, 2) if "recovery code" in m["Subject"]]
    assert mail and "9 unused recovery codes left" in plain_text(mail[0])
    with services.session() as db:
        used = db.scalars(select(Event).where(Event.kind == "recovery_code.used")).one()
        assert used.details == {"left": 9}
    other = app.test_client()
    step2 = first_step(other, mailbox, member.email)["mfaChallengeId"]
    reused = other.post(
        "/api/auth/verify/mfa", json={"mfaChallengeId": step2, "recoveryCode": codes[0]}
    )
    assert_error(reused, 400, "invalid_code")


def test_wrong_second_codes_count_and_five_end_the_step(
    client, mailbox, member, with_app, services, clock
):
    secret, _codes = with_app
    step = first_step(client, mailbox, member.email)["mfaChallengeId"]
    for left in (4, 3, 2, 1):
        wrong = client.post("/api/auth/verify/mfa", json={"mfaChallengeId": step, "code": "000000"})
        assert (
            f"{left} {'try' if left == 1 else 'tries'} left"
            in assert_error(wrong, 400, "invalid_code")["error"]
        )
    locked = client.post(
        "/api/auth/verify/mfa", json={"mfaChallengeId": step, "recoveryCode": "zzzzz-zzzzz"}
    )
    assert_error(locked, 400, "challenge_locked")
    late = client.post(
        "/api/auth/verify/mfa", json={"mfaChallengeId": step, "code": app_code(secret, clock)}
    )
    assert_error(late, 400, "challenge_locked")
    with services.session() as db:
        assert db.scalars(select(MfaChallenge)).one().attempts == mfa.MAX_ATTEMPTS
        failed = db.scalars(select(Event).where(Event.kind == "mfa.failed")).all()
        assert [e.details["attempts"] for e in failed] == [1, 2, 3, 4, 5]
        assert db.scalar(select(func.count()).select_from(UserSession)) == 0


def test_parallel_answers_with_the_right_code_start_one_session(
    app, mailbox, member, with_app, services, clock
):
    secret, _codes = with_app
    step = first_step(app.test_client(), mailbox, member.email)["mfaChallengeId"]
    code = app_code(secret, clock)

    def answer(_n):
        return (
            app.test_client()
            .post("/api/auth/verify/mfa", json={"mfaChallengeId": step, "code": code})
            .status_code
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(answer, range(8)))
    assert statuses.count(201) == 1 and statuses.count(400) == 7
    with services.session() as db:
        assert db.scalar(select(func.count()).select_from(UserSession)) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"mfaChallengeId": "mfa_x"}, "code"),
        ({"mfaChallengeId": "mfa_x", "code": "123456", "recoveryCode": "abcde-fghjk"}, "code"),
        ({"code": "123456"}, "mfaChallengeId"),
        ({"mfaChallengeId": 5, "code": "123456"}, "mfaChallengeId"),
    ],
)
def test_bad_second_step_bodies_are_validation_errors(client, body, field):
    answer = client.post("/api/auth/verify/mfa", json=body)
    assert assert_error(answer, 422, "validation_error")["field"] == field


def test_an_unknown_step_is_an_invalid_code(client):
    answer = client.post(
        "/api/auth/verify/mfa", json={"mfaChallengeId": "mfa_nope", "code": "123456"}
    )
    assert_error(answer, 400, "invalid_code")


def test_an_admin_without_an_app_where_one_is_required_is_told_to_add_it(
    client, mailbox, make, tenant, services
):
    ada = make.user("ada@acme.test", tenant, role="admin")
    make.policy(tenant, require_totp_for_admins=True)
    challenge, code = ask_code(client, mailbox, ada.email)
    answer = client.post("/api/auth/verify", json={"challengeId": challenge, "code": code})
    assert "Sign in on the web" in assert_error(answer, 403, "mfa_enrolment_required")["error"]
    with services.session() as db:
        assert db.scalar(select(func.count()).select_from(UserSession)) == 0
        assert db.scalars(select(MfaChallenge)).one().purpose == "enrol"
    # Nor can that step be answered over the API.
    with services.session() as db:
        step = db.scalars(select(MfaChallenge)).one().id
    refused = client.post("/api/auth/verify/mfa", json={"mfaChallengeId": step, "code": "123456"})
    assert_error(refused, 400, "invalid_code")


def test_deny_mode_is_checked_again_at_the_second_step(
    app, client, mailbox, member, make, tenant, with_app, services, clock
):
    secret, codes = with_app
    make.policy(tenant, max_sessions_per_user=1, limit_mode="deny")
    first = app.test_client()
    step = first_step(first, mailbox, member.email)["mfaChallengeId"]
    kept = first.post(
        "/api/auth/verify/mfa", json={"mfaChallengeId": step, "recoveryCode": codes[1]}
    )
    assert kept.status_code == 201
    challenge, code = ask_code(client, mailbox, member.email)
    refused = client.post("/api/auth/verify", json={"challengeId": challenge, "code": code})
    assert_error(refused, 409, "session_limit_reached")
    step = client.post(
        "/api/auth/verify",
        json={"challengeId": challenge, "code": code, "endSessionId": kept.json["sessionId"]},
    )
    step_id = assert_error(step, 401, "mfa_required")["mfaChallengeId"]
    done = client.post(
        "/api/auth/verify/mfa", json={"mfaChallengeId": step_id, "code": app_code(secret, clock)}
    )
    assert done.status_code == 201, done.text
    assert stored_session(services, kept.json["sessionId"]).end_reason == "revoked_by_user"
