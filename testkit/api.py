"""Calling the JSON API the way a client program does: signing in with the emailed code,
bearer headers, checking the ``{"error", "code"}`` answers, and the list of routes the
API promises (the contract its OpenAPI document must describe)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from flask.testing import FlaskClient

from testkit.mail import Mailbox
from testkit.values import UA_MAC_CHROME

#: the keys every JSON error answer carries
ERROR_KEYS = {"error", "code"}

#: every (method, path) the API promises, in OpenAPI's spelling
CONTRACT = {
    ("post", "/api/auth/login"),
    ("post", "/api/auth/verify"),
    ("post", "/api/auth/verify/mfa"),
    ("get", "/api/auth/session"),
    ("post", "/api/auth/session/extend"),
    ("post", "/api/auth/logout"),
    ("get", "/api/auth/sessions"),
    ("delete", "/api/auth/sessions/{sessionId}"),
    ("delete", "/api/auth/sessions/others"),
    ("get", "/api/admin/sessions"),
    ("delete", "/api/admin/sessions/{sessionId}"),
    ("delete", "/api/admin/users/{userId}/sessions"),
    ("get", "/api/admin/policy"),
    ("put", "/api/admin/policy"),
    ("get", "/api/admin/retention"),
    ("put", "/api/admin/retention"),
    ("get", "/auth/verify"),
    ("get", "/auth/sign-in"),
    ("get", "/.well-known/jwks.json"),
    # a tenant's OpenID Connect apps (issue 25)
    ("get", "/api/admin/apps"),
    ("post", "/api/admin/apps"),
    ("get", "/api/admin/apps/{clientId}"),
    ("patch", "/api/admin/apps/{clientId}"),
    ("delete", "/api/admin/apps/{clientId}"),
    ("post", "/api/admin/apps/{clientId}/secret"),
    ("get", "/api/admin/apps/{clientId}/sign-ins"),
    ("delete", "/api/admin/apps/{clientId}/sign-ins/{grantId}"),
    # passkeys (issue 24)
    ("post", "/api/auth/passkey/options"),
    ("post", "/api/auth/passkey/verify"),
    ("post", "/api/account/passkeys/options"),
    ("get", "/api/account/passkeys"),
    ("post", "/api/account/passkeys"),
    ("delete", "/api/account/passkeys/{passkeyId}"),
    ("patch", "/api/account/passkeys/{passkeyId}"),
    ("post", "/api/auth/passkey/enrol/options"),
    ("post", "/api/auth/passkey/enrol"),
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ask_code(client: FlaskClient, mailbox: Mailbox, email: str, **headers: str) -> tuple[str, str]:
    """(challengeId, the emailed code)."""
    before = mailbox.count(email)
    answer = client.post("/api/auth/login", json={"email": email}, headers=headers)
    assert answer.status_code == 202, answer.text
    return answer.json["challengeId"], mailbox.last_code(email, before + 1)


def api_sign_in(
    client: FlaskClient,
    mailbox: Mailbox,
    email: str,
    *,
    user_agent: str = UA_MAC_CHROME,
    **fields: Any,
) -> Any:
    """Both sign-in steps; returns the answer of POST /api/auth/verify."""
    headers = {"User-Agent": user_agent}
    challenge, code = ask_code(client, mailbox, email, **headers)
    return client.post(
        "/api/auth/verify", json={"challengeId": challenge, "code": code, **fields}, headers=headers
    )


def token_for(client: FlaskClient, mailbox: Mailbox, email: str, **fields: Any) -> str:
    answer = api_sign_in(client, mailbox, email, **fields)
    assert answer.status_code == 201, answer.text
    return answer.json["token"]


def assert_error(answer: Any, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, (answer.status_code, answer.text)
    assert answer.mimetype == "application/json", answer.text
    assert answer.json.keys() >= ERROR_KEYS
    assert answer.json["code"] == code, answer.json
    assert answer.json["error"]
    return answer.json


def post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 (http to the test's own server)
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (test server)
        return json.load(answer)
