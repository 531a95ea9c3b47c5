"""The API contract as written for people and programs: docs/api.md lists every policy
field the API accepts, and the OpenAPI document says which operations need credentials
(those that do answer 401 without them) and under which licence the API is described.
(`make lint` lints the same document with Redocly CLI: tools/lint_openapi.py.)"""

from __future__ import annotations

import re
from pathlib import Path

from app.core import policy
from app.models import Tenant
from testkit.api import bearer, token_for

DOCS = Path(__file__).resolve().parent.parent / "docs" / "api.md"
PUBLIC = {"login", "verify", "verifyMfa", "proxySignIn", "jwks"}


def documented_policy_fields() -> list[str]:
    text = DOCS.read_text()
    table = text[text.index("The policy (`GET`/`PUT /api/admin/policy`") :]
    table = table[: table.index("\n\n", table.index("| field |"))]
    return re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE)


def test_docs_list_every_policy_field_the_api_accepts(client, mailbox, make, tenant, services):
    documented = documented_policy_fields()
    assert documented == [field.api_name for field in policy.FIELDS]
    admin = make.user("root@acme.test", tenant, role="admin")
    token = token_for(client, mailbox, admin.email)
    current = client.get("/api/admin/policy", headers=bearer(token)).json
    assert set(current) == set(documented)
    # Each documented field is accepted on its own, with a value the docs allow.
    flipped = {
        "ipChange": "flag",
        "uaChange": "flag",
        "limitMode": "deny",
        "maxSessionsPerUser": 3,
        "idleTimeout": 600,
        "absoluteLifetime": 7200,
        "trustedLifetime": 86400,
    }
    # (requiring an authenticator app of admins shuts this admin out: last)
    for name in sorted(documented, key=lambda name: name == "requireTotpForAdmins"):
        value = flipped.get(name, not current[name] if isinstance(current[name], bool) else None)
        answer = client.put("/api/admin/policy", json={name: value}, headers=bearer(token))
        assert answer.status_code == 200, (name, answer.text)
        assert answer.json[name] == value
    with services.session() as db:
        row = db.get_one(Tenant, tenant.id)
        assert (row.ip_change, row.ua_change) == ("flag", "flag")
        assert row.require_totp_for_admins is (not current["requireTotpForAdmins"])
        assert row.notify_high_alerts is (not current["notifyHighAlerts"])


def test_openapi_marks_public_operations_and_carries_the_licence(client):
    document = client.get("/api/openapi.json").json
    assert document["info"]["license"] == {"name": "Apache-2.0", "identifier": "Apache-2.0"}
    assert all(tag.get("description") for tag in document["tags"])
    operations = {
        operation["operationId"]: (method, path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }
    assert all("security" in operation for _m, _p, operation in operations.values())
    public = {name for name, (_m, _p, op) in operations.items() if op["security"] == []}
    assert public == PUBLIC
    # Every other operation needs credentials, and answers 401 without them.
    for name, (method, path, _operation) in operations.items():
        if name in PUBLIC:
            continue
        url = path.replace("{sessionId}", "sess_unknown").replace("{userId}", "usr_unknown")
        answer = client.open(url, method=method.upper(), json={} if method != "get" else None)
        assert answer.status_code == 401, (name, answer.status_code)
    # ...and the public ones need none.
    assert client.get("/.well-known/jwks.json").status_code == 200
    assert client.post("/api/auth/login", json={"email": "x@acme.test"}).status_code == 202
    assert client.get("/auth/sign-in", headers={"Accept": "text/html"}).status_code == 302
