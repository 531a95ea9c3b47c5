"""The API contract as written for people and programs: docs/api.md lists every policy
field the API accepts, and the OpenAPI document says which operations need credentials
(those that do answer 401 without them) and under which licence the API is described; its
error codes are those of the error classes, and its body schemas are what the views
read.
(`make lint` lints the same document with Redocly CLI: tools/lint_openapi.py.)"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from app.core import policy
from app.core.errors import known_errors
from app.models import Tenant
from app.web.errors import HTTP_CODES
from testkit.api import bearer, token_for

DOCS = Path(__file__).resolve().parent.parent / "docs" / "api.md"
PUBLIC = {
    "login",
    "verify",
    "verifyMfa",
    "proxySignIn",
    "jwks",
    "passkeySignInOptions",
    "passkeySignIn",
    "passkeyEnrolmentOptions",
    "passkeyEnrol",
}


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
        "trustedIdleTimeout": 36000,
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
        url = url.replace("{passkeyId}", "pkey_unknown")
        answer = client.open(url, method=method.upper(), json={} if method != "get" else None)
        assert answer.status_code == 401, (name, answer.status_code)
    # ...and the public ones need none.
    assert client.get("/.well-known/jwks.json").status_code == 200
    assert client.post("/api/auth/login", json={"email": "x@acme.test"}).status_code == 202
    assert client.get("/auth/sign-in", headers={"Accept": "text/html"}).status_code == 302


def every_error_code_in_app() -> set[str]:
    """The code of every error class defined anywhere in ``app`` (each module imported)."""
    import app

    for module in pkgutil.walk_packages(app.__path__, "app."):
        importlib.import_module(module.name)
    return {error.code for error in known_errors()}


def test_error_codes_in_the_document_come_from_every_error_class(tmp_path):
    """The document of a freshly started server lists the code of every error class in
    ``app`` and of every plain HTTP error: nothing kept by hand, so nothing drifts."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from app import create_app\n"
        "folder = Path(sys.argv[1])\n"
        "app = create_app({'DATABASE_URL': f'sqlite:///{folder}/x.db', "
        "'SECRET_KEY': 'contract-' + 'x' * 40, 'MAIL_URL': 'console', "
        "'LOG_LEVEL': 'WARNING'}, instance_path=folder)\n"
        "document = app.test_client().get('/api/openapi.json').json\n"
        "app.extensions['holdfast'].close()\n"
        "print(json.dumps(document['components']['schemas']['Error']"
        "['properties']['code']['examples']))\n"
    )
    answer = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    published = set(json.loads(answer.stdout.splitlines()[-1]))
    expected = every_error_code_in_app() | set(HTTP_CODES.values())
    assert published == expected
    # the codes a hand-kept list once lacked
    assert {
        "last_admin",
        "totp_required",
        "tenant_choice_required",
        "mfa_required",
        "mfa_enrolment_required",
        "secrets_unavailable",
        "bad_request",
        "unsupported_media_type",
    } <= published
    # ...and docs/api.md names no code that does not exist
    table = DOCS.read_text().split("## Errors", 1)[1].split("\n\n## ", 1)[0]
    documented = set(re.findall(r"^\| \d{3} \| `(\w+)` \|", table, flags=re.MULTILINE))
    assert documented and documented <= published


#: a value of the right type, by JSON Schema type (an object: a credential)
RIGHT_TYPE: dict[str, Any] = {"object": {}, "array": ["x"], "string": "x"}


def body_cases(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], str, str]]:
    """(method, path, body, field, the error's words) for each way the published body
    schemas say a body is wrong: a required field missing, a field of the wrong type, a
    string one character over its maxLength."""
    cases = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            content = operation.get("requestBody", {}).get("content", {})
            schema = content.get("application/json", {}).get("schema", {})
            if "properties" not in schema:
                continue  # a settings change: tested with its own rules
            required = schema["required"]
            # a value of the right type for each required field (an object: a credential)
            properties = schema["properties"]
            valid = {name: RIGHT_TYPE[properties[name]["type"]] for name in required}
            for name in required:
                rest = {k: v for k, v in valid.items() if k != name}
                cases.append((method, path, rest, name, f"{name} is required."))
            for name, prop in schema["properties"].items():
                kinds = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
                wrong = "a string" if "array" in kinds else ["a list"]
                cases.append((method, path, {**valid, name: wrong}, name, f"{name} must be "))
                if "maxLength" in prop:
                    long = "x" * (prop["maxLength"] + 1)
                    words = f"{name} is at most {prop['maxLength']} characters."
                    cases.append((method, path, {**valid, name: long}, name, words))
    return cases


def test_bodies_are_read_as_the_document_publishes_them(client, mailbox, make, tenant):
    """The views read their bodies with the declarations the document is made from: every
    fault the published schema implies is a 422 naming that field, for that reason (a
    published maxLength is the one enforced). Signed in, for the bodies that need it."""
    token = token_for(client, mailbox, make.user("sam@acme.test", tenant, role="admin").email)
    cases = body_cases(client.get("/api/openapi.json").json)
    assert {path for _method, path, *_rest in cases} == {
        "/api/auth/login",
        "/api/auth/verify",
        "/api/auth/verify/mfa",
        "/api/auth/passkey/options",
        "/api/auth/passkey/verify",
        "/api/auth/passkey/enrol/options",
        "/api/auth/passkey/enrol",
        "/api/account/passkeys",
        "/api/account/passkeys/{passkeyId}",
        "/api/admin/apps",
        "/api/admin/apps/{clientId}",
    }
    app = {"name": "Grafana", "redirectUris": ["https://app.example/cb"]}
    client_id = client.post("/api/admin/apps", json=app, headers=bearer(token)).json["clientId"]
    for method, path, body, name, words in cases:
        # (a path's id: the body is read before anything is looked up)
        url = path.replace("{clientId}", client_id).replace("{passkeyId}", "pkey_none")
        answer = client.open(url, method=method.upper(), json=body, headers=bearer(token))
        assert answer.status_code == 422, (path, body, answer.json)
        assert answer.json["code"] == "validation_error"
        assert answer.json["field"] == name, (path, body, answer.json)
        assert answer.json["error"].startswith(words), (path, body, answer.json)
