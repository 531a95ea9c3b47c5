"""The API described as OpenAPI 3.1, built here in Python from the same tables the code
uses (the policy fields and their ranges, the device kinds, the session filters), served
at ``/api/openapi.json`` and rendered for people at ``/api/docs``.

``/api/docs/example`` is a small page that loads ``static/js/holdfast-session.js``, for
trying the JS client from a browser's console (and for its browser test).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template

from app.core import admin, retention
from app.core.policy import FIELDS
from app.core.signin import MIN_EXPIRES_IN
from app.models import END_REASONS, ROLES
from app.user_agents import DEVICE_KINDS
from app.version import __version__

bp = Blueprint("openapi", __name__)

ERROR_CODES = (
    "bad_request",
    "invalid_code",
    "challenge_locked",
    "invalid_session",
    "session_expired",
    "fresh_login_required",
    "forbidden",
    "totp_required",
    "not_found",
    "method_not_allowed",
    "session_limit_reached",
    "payload_too_large",
    "unsupported_media_type",
    "validation_error",
    "rate_limited",
    "unavailable",
    "secrets_unavailable",
    "tenant_choice_required",
    "mfa_required",
    "mfa_enrolment_required",
    "invalid_passkey",
    "passkey_required",
)
PUBLIC_ID = "^[a-z]{3,4}_[A-Za-z0-9_-]{1,36}$"

DATE_TIME = {"type": "string", "format": "date-time"}
ERROR = {
    "type": "object",
    "required": ["error", "code"],
    "properties": {
        "error": {"type": "string", "description": "A sentence a person can read."},
        "code": {
            "type": "string",
            "description": "Stable code a client branches on.",
            "examples": list(ERROR_CODES),
        },
        "field": {"type": "string", "description": "The input at fault (validation_error)."},
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str, schema: str = "Error") -> dict[str, Any]:
    return _json(_ref(schema), description)


def _schemas() -> dict[str, Any]:
    session = {
        "type": "object",
        "required": [
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
        ],
        "properties": {
            "id": {"type": "string", "description": "Public session id (sess_...)."},
            "device": {
                "type": "string",
                "description": 'The device\'s name, given or derived ("Chrome on macOS").',
            },
            "deviceType": {"type": "string", "enum": list(DEVICE_KINDS)},
            "os": {"type": "string"},
            "browser": {"type": "string"},
            "ip": {"type": "string", "description": "Address the session was created from."},
            "location": {"type": ["string", "null"]},
            "createdAt": DATE_TIME,
            "lastActive": {**DATE_TIME, "description": "Written at most once a minute."},
            "expiresAt": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "When it ends if nothing more happens (null: ended).",
            },
            "current": {"type": "boolean", "description": "The session making this request."},
            "trusted": {"type": "boolean", "description": "On a trusted device."},
        },
    }
    admin_session = {
        "allOf": [
            _ref("Session"),
            {
                "type": "object",
                "required": ["endedAt", "endReason", "user"],
                "properties": {
                    "endedAt": {"type": ["string", "null"], "format": "date-time"},
                    "endReason": {"type": ["string", "null"], "enum": [*END_REASONS, None]},
                    "user": {
                        "type": "object",
                        "required": ["id", "email", "name", "role"],
                        "properties": {
                            "id": {"type": "string"},
                            "email": {"type": "string"},
                            "name": {"type": ["string", "null"]},
                            "role": {"type": "string", "enum": list(ROLES)},
                        },
                    },
                },
            },
        ]
    }
    return {
        "Error": ERROR,
        "SessionLimitError": {
            "allOf": [
                _ref("Error"),
                {
                    "type": "object",
                    "required": ["sessions", "alsoEnds"],
                    "properties": {
                        "sessions": {"type": "array", "items": _ref("Session")},
                        "alsoEnds": {
                            "type": "integer",
                            "minimum": 0,
                            "description": "How many other sessions signing in ends "
                            "besides the chosen one: more than 0 when the limit was "
                            "lowered below what the person holds (the least recently "
                            "active ones, untrusted devices first).",
                        },
                    },
                },
            ],
            "description": "deny mode at the limit: repeat the same code with endSessionId "
            "set to one of these sessions.",
        },
        "SignedIn": {
            "type": "object",
            "required": ["sessionId", "token", "expiresAt", "deviceInfo"],
            "properties": {
                "sessionId": {"type": "string"},
                "token": {
                    "type": "string",
                    "description": "ES256 JWT; send as "
                    "Authorization: Bearer. exp is the absolute deadline.",
                },
                "expiresAt": DATE_TIME,
                "deviceId": {
                    "type": "string",
                    "description": "Only when a new "
                    "device secret was made: keep it, send it next time.",
                },
                "deviceInfo": {
                    "type": "object",
                    "required": [
                        "id",
                        "name",
                        "type",
                        "os",
                        "browser",
                        "trusted",
                        "isNew",
                    ],
                    "properties": {
                        "id": {"type": "string"},
                        "name": {"type": "string"},
                        "type": {"type": "string", "enum": list(DEVICE_KINDS)},
                        "os": {"type": "string"},
                        "browser": {"type": "string"},
                        "trusted": {"type": "boolean"},
                        "isNew": {"type": "boolean"},
                    },
                },
            },
        },
        "TenantChoiceError": {
            "allOf": [
                _ref("Error"),
                {
                    "type": "object",
                    "required": ["tenants"],
                    "properties": {
                        "tenants": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["id", "slug", "name"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "slug": {"type": "string"},
                                    "name": {"type": "string"},
                                },
                            },
                        }
                    },
                },
            ],
            "description": "The code is right and the address has accounts in several "
            "organisations: repeat the same code with tenantId set to one of these.",
        },
        "MfaRequiredError": {
            "allOf": [
                _ref("Error"),
                {
                    "type": "object",
                    "required": ["mfaChallengeId", "expiresAt", "methods"],
                    "properties": {
                        "mfaChallengeId": {"type": "string"},
                        "expiresAt": DATE_TIME,
                        "methods": {
                            "type": "array",
                            "items": {"type": "string", "enum": ["totp", "recovery_code"]},
                        },
                    },
                },
            ],
            "description": "The emailed code was right; answer POST /api/auth/verify/mfa.",
        },
        "StatusError": {
            "allOf": [
                _ref("Error"),
                {
                    "type": "object",
                    "required": ["valid"],
                    "properties": {"valid": {"const": False}},
                },
            ]
        },
        "Session": session,
        "AdminSession": admin_session,
        "Policy": _policy_schema(require_all=True),
        "PolicyChange": _policy_schema(require_all=False),
        "Retention": _retention_schema(require_all=True),
        "RetentionChange": _retention_schema(require_all=False),
    }


def _policy_schema(*, require_all: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for setting in FIELDS:
        if setting.kind is bool:
            schema: dict[str, Any] = {"type": "boolean"}
        elif setting.kind is str:
            schema = {"type": "string", "enum": list(setting.choices)}
        else:
            schema = {"type": "integer", "minimum": setting.low, "maximum": setting.high}
        properties[setting.api_name] = {
            **schema,
            "description": f"{setting.help} Allowed: {setting.describe_range()}.",
        }
    return _settings_object(
        properties,
        require_all=require_all,
        change="Any subset of the policy; all or nothing. Idle timeout may not exceed the "
        "absolute lifetime.",
    )


def _retention_schema(*, require_all: bool) -> dict[str, Any]:
    properties = {
        api_name: {
            "type": "integer",
            "minimum": retention.LOWEST,
            "maximum": retention.HIGHEST,
            "description": f"{retention.LABELS[name]} this many days "
            f"(default {retention.DEFAULTS[name]}).",
        }
        for name, api_name in retention.API_NAMES.items()
    }
    return _settings_object(
        properties,
        require_all=require_all,
        change="Any subset of the periods; all or nothing.",
    )


def _settings_object(
    properties: dict[str, Any], *, require_all: bool, change: str
) -> dict[str, Any]:
    """A settings object as answered (every field required) or as a change (any subset,
    nothing else: ``change`` describes it)."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if require_all:
        schema["required"] = list(properties)
    else:
        schema["additionalProperties"] = False
        schema["description"] = change
    return schema


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _path_id(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": PUBLIC_ID},
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


SIGNED_IN: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"cookieAuth": []}]
#: an operation anyone may call: OpenAPI's way to say no credentials are needed
PUBLIC: list[dict[str, list[str]]] = []
UNAUTHORIZED = _error(
    "No live session: invalid_session (unknown, ended, revoked, bad token) or session_expired."
)
ADMIN_UNAUTHORIZED = _error(
    "No live session, or fresh_login_required: admin routes need a "
    "code entered in the last 15 minutes (sign in again)."
)
FORBIDDEN_ADMIN = _error(
    "forbidden: the caller is not a tenant admin (or a cookie write came from another site)."
)
COOKIE_WRITE = {
    "403": _error("forbidden: a cookie-authenticated write came from another site."),
    "415": _error("unsupported_media_type: cookie-authenticated writes must send JSON."),
}
BODY_ERRORS = {
    "400": _error("bad_request: the body is not a JSON object."),
    "413": _error("payload_too_large: the body is over 64 KiB."),
    "415": _error("unsupported_media_type: the body is not application/json."),
    "422": _error(
        "validation_error: a field is missing, of the wrong type or out of range (see field)."
    ),
}


def _paths() -> dict[str, Any]:
    session_list = {
        "type": "object",
        "required": ["sessions"],
        "properties": {"sessions": {"type": "array", "items": _ref("Session")}},
    }
    revoked = {
        "type": "object",
        "required": ["revoked"],
        "properties": {"revoked": {"type": "integer", "minimum": 0}},
    }
    return {
        "/api/auth/login": {
            "post": {
                "operationId": "login",
                "tags": ["Sign-in"],
                "security": PUBLIC,
                "summary": "Send a one-time code by email",
                "description": "Always 202 for a well-formed address, whether or not an account "
                "exists (no answer tells). Rate limited per address and per IP "
                "like the sign-in page; 429 carries Retry-After.",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["email"],
                        "properties": {
                            "email": {
                                "type": "string",
                                "format": "email",
                                "maxLength": 320,
                                "examples": ["sam@example.com"],
                            }
                        },
                    }
                ),
                "responses": {
                    "202": _json(
                        {
                            "type": "object",
                            "required": ["challengeId"],
                            "properties": {"challengeId": {"type": "string"}},
                        },
                        "A challenge to answer with the emailed code.",
                    ),
                    **BODY_ERRORS,
                    "429": _error("rate_limited: too many codes asked for; see Retry-After."),
                },
            }
        },
        "/api/auth/verify": {
            "post": {
                "operationId": "verify",
                "security": PUBLIC,
                "tags": ["Sign-in"],
                "summary": "Exchange the code for a session and its token",
                "description": "The code works once, for 10 minutes, and dies after 5 wrong "
                "tries. deviceId is the client's own secret for its install; "
                "send it every time so the device is recognised (a new one is "
                "made and returned as deviceId when none is sent). In deny mode "
                "at the session limit the answer is 409 with the live sessions: "
                "repeat the same code with endSessionId. An address with accounts in "
                "several organisations gets 409 tenant_choice_required with its tenants: "
                "repeat the same code with tenantId. Where a second factor is needed "
                "(an authenticator app), 401 mfa_required hands over the second step.",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["challengeId", "code"],
                        "properties": {
                            "challengeId": {"type": "string", "maxLength": 64},
                            "code": {"type": "string", "maxLength": 32, "examples": ["123456"]},
                            "deviceId": {"type": ["string", "null"], "maxLength": 200},
                            "deviceName": {"type": ["string", "null"], "maxLength": 100},
                            "deviceType": {
                                "type": ["string", "null"],
                                "enum": [*DEVICE_KINDS, None],
                            },
                            "expiresIn": {
                                "type": ["integer", "null"],
                                "minimum": MIN_EXPIRES_IN,
                                "description": "Ask for a shorter session (seconds); "
                                "never longer than the policy allows.",
                            },
                            "extendOnActivity": {"type": ["boolean", "null"]},
                            "endSessionId": {"type": ["string", "null"], "maxLength": 40},
                            "tenantId": {
                                "type": ["string", "null"],
                                "maxLength": 40,
                                "description": "The organisation to sign in to, for an "
                                "address with accounts in several (see the 409 "
                                "tenant_choice_required answer).",
                            },
                        },
                    }
                ),
                "responses": {
                    "201": _json(_ref("SignedIn"), "Signed in."),
                    **BODY_ERRORS,
                    "400": _error("invalid_code, challenge_locked, or bad_request."),
                    "401": _error(
                        "mfa_required: the code was right (and is used up); answer the "
                        "second step at POST /api/auth/verify/mfa with mfaChallengeId.",
                        "MfaRequiredError",
                    ),
                    "403": _error(
                        "mfa_enrolment_required: the tenant requires an authenticator app "
                        "of admins and this admin has none; they add it by signing in on "
                        "the web once."
                    ),
                    "409": _json(
                        {"anyOf": [_ref("SessionLimitError"), _ref("TenantChoiceError")]},
                        "session_limit_reached (deny mode: repeat the same code with "
                        "endSessionId) or tenant_choice_required (the address has accounts "
                        "in several organisations: repeat the same code with tenantId).",
                    ),
                },
            }
        },
        "/api/auth/verify/mfa": {
            "post": {
                "operationId": "verifyMfa",
                "tags": ["Sign-in"],
                "summary": "Answer the second step with the app's code or a recovery code",
                "description": "For people with an authenticator app (and admins of tenants "
                "that require one) the emailed code is only the first step: POST "
                "/api/auth/verify answers 401 mfa_required with an mfaChallengeId. Send "
                "it here with the app's current 6-digit code, or one of the person's "
                "single-use recovery codes (xxxxx-xxxxx). The session is the one the "
                "first step asked for (device, expiresIn, extendOnActivity). The step "
                "lives 10 minutes and dies after 5 wrong codes (sign in again). Each app "
                "code and recovery code works once; a recovery code's use is audited and "
                "mailed to the person.",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["mfaChallengeId"],
                        "properties": {
                            "mfaChallengeId": {"type": "string", "maxLength": 64},
                            "code": {
                                "type": ["string", "null"],
                                "maxLength": 32,
                                "description": "The authenticator app's code now.",
                                "examples": ["123456"],
                            },
                            "recoveryCode": {
                                "type": ["string", "null"],
                                "maxLength": 32,
                                "description": "One of the person's recovery codes, "
                                "instead of code (send one of the two).",
                                "examples": ["abcde-fghjk"],
                            },
                            "endSessionId": {
                                "type": ["string", "null"],
                                "maxLength": 40,
                                "description": "deny mode, when the live sessions "
                                "changed since the first step.",
                            },
                        },
                    }
                ),
                "responses": {
                    "201": _json(_ref("SignedIn"), "Signed in."),
                    **BODY_ERRORS,
                    "400": _error(
                        "invalid_code (wrong, counted; or the step is unknown, used or "
                        "expired), challenge_locked (5 wrong codes: sign in again), or "
                        "bad_request."
                    ),
                    "401": _error("invalid_session: the account was disabled meanwhile."),
                    "409": _error("session_limit_reached (deny mode).", "SessionLimitError"),
                },
                "security": PUBLIC,
            }
        },
        "/api/auth/session": {
            "get": {
                "operationId": "sessionStatus",
                "tags": ["Your sessions"],
                "summary": "Is the caller's session live, and until when",
                "description": "Not counted as activity: polling it never keeps a session alive.",
                "security": SIGNED_IN,
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": [
                                "valid",
                                "sessionId",
                                "expiresAt",
                                "expiresIn",
                                "deviceCount",
                            ],
                            "properties": {
                                "valid": {"const": True},
                                "sessionId": {"type": "string"},
                                "expiresAt": DATE_TIME,
                                "expiresIn": {"type": "integer", "minimum": 0},
                                "deviceCount": {"type": "integer", "minimum": 0},
                            },
                        },
                        "The session is live.",
                    ),
                    "401": _error("Not live: invalid_session or session_expired.", "StatusError"),
                },
            }
        },
        "/api/auth/session/extend": {
            "post": {
                "operationId": "extendSession",
                "tags": ["Your sessions"],
                "summary": "Count as activity and get a fresh token",
                "description": "Moves the idle deadline like any request (at most once a minute, "
                "never past the absolute deadline, never for a session signed in "
                "with extendOnActivity false).",
                "security": SIGNED_IN,
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["token", "expiresAt", "expiresIn"],
                            "properties": {
                                "token": {"type": "string"},
                                "expiresAt": DATE_TIME,
                                "expiresIn": {"type": "integer", "minimum": 0},
                            },
                        },
                        "The deadline now in force and a new token for the same session.",
                    ),
                    "401": UNAUTHORIZED,
                    **COOKIE_WRITE,
                },
            }
        },
        "/api/auth/logout": {
            "post": {
                "operationId": "logout",
                "tags": ["Your sessions"],
                "summary": "End the current session",
                "security": SIGNED_IN,
                "responses": {
                    "204": {"description": "Signed out."},
                    "401": UNAUTHORIZED,
                    **COOKIE_WRITE,
                },
            }
        },
        "/api/auth/sessions": {
            "get": {
                "operationId": "listSessions",
                "tags": ["Your sessions"],
                "summary": "The caller's live sessions",
                "security": SIGNED_IN,
                "responses": {
                    "200": _json(session_list, "Current device first."),
                    "401": UNAUTHORIZED,
                },
            }
        },
        "/api/auth/sessions/others": {
            "delete": {
                "operationId": "endOtherSessions",
                "tags": ["Your sessions"],
                "summary": "End every session but the current one",
                "security": SIGNED_IN,
                "responses": {
                    "200": _json(revoked, "How many ended."),
                    "401": UNAUTHORIZED,
                    **COOKIE_WRITE,
                },
            }
        },
        "/api/auth/sessions/{sessionId}": {
            "delete": {
                "operationId": "endSession",
                "tags": ["Your sessions"],
                "summary": "End one of the caller's sessions",
                "parameters": [_path_id("sessionId", "One of the caller's session ids.")],
                "security": SIGNED_IN,
                "responses": {
                    "204": {"description": "Ended (or had ended already)."},
                    "401": UNAUTHORIZED,
                    "404": _error("not_found: no such session of the caller's."),
                    **COOKIE_WRITE,
                },
            }
        },
        "/api/admin/sessions": {
            "get": {
                "operationId": "adminListSessions",
                "tags": ["Tenant admin"],
                "summary": "The tenant's sessions, filtered, a page at a time",
                "description": "Keyset pagination: pass nextCursor back as cursor. Needs the "
                "admin role and a code entered in the last 15 minutes.",
                "security": SIGNED_IN,
                "parameters": [
                    _query(
                        "status",
                        {"type": "string", "enum": list(admin.STATUSES)},
                        "live (default), ended or all.",
                    ),
                    _query("userId", {"type": "string", "maxLength": 200}, "One person's id."),
                    _query(
                        "q",
                        {"type": "string", "maxLength": 200},
                        "Text in the person's email or the device name.",
                    ),
                    _query("kind", {"type": "string", "enum": list(DEVICE_KINDS)}, "Device type."),
                    _query("os", {"type": "string", "maxLength": 200}, "Operating system."),
                    _query("browser", {"type": "string", "maxLength": 200}, "Browser."),
                    _query("ipPrefix", {"type": "string", "maxLength": 200}, "Start of the IP."),
                    _query("signedInFrom", DATE_TIME, "Signed in at or after."),
                    _query("signedInTo", DATE_TIME, "Signed in before."),
                    _query(
                        "sort",
                        {"type": "string", "enum": ["lastActive", "createdAt"]},
                        "Newest first by last activity (default) or by sign-in.",
                    ),
                    _query(
                        "cursor",
                        {"type": "string", "maxLength": 200},
                        "nextCursor of the previous page.",
                    ),
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": admin.MAX_PAGE},
                        "Page size (default 50).",
                    ),
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["sessions", "nextCursor"],
                            "properties": {
                                "sessions": {"type": "array", "items": _ref("AdminSession")},
                                "nextCursor": {"type": ["string", "null"]},
                            },
                        },
                        "One page, newest first.",
                    ),
                    "401": ADMIN_UNAUTHORIZED,
                    "403": FORBIDDEN_ADMIN,
                    "422": _error("validation_error: a filter is not valid (see field)."),
                },
            }
        },
        "/api/admin/sessions/{sessionId}": {
            "delete": {
                "operationId": "adminEndSession",
                "tags": ["Tenant admin"],
                "summary": "End any session of the tenant",
                "security": SIGNED_IN,
                "parameters": [_path_id("sessionId", "A session of the admin's tenant.")],
                "responses": {
                    "204": {"description": "Ended (or had ended already)."},
                    "401": ADMIN_UNAUTHORIZED,
                    "403": FORBIDDEN_ADMIN,
                    "404": _error("not_found: no such session in this tenant."),
                    "415": COOKIE_WRITE["415"],
                },
            }
        },
        "/api/admin/users/{userId}/sessions": {
            "delete": {
                "operationId": "adminEndUserSessions",
                "tags": ["Tenant admin"],
                "summary": "End every live session of one person",
                "security": SIGNED_IN,
                "parameters": [_path_id("userId", "A person of the admin's tenant.")],
                "responses": {
                    "200": _json(revoked, "How many ended."),
                    "401": ADMIN_UNAUTHORIZED,
                    "403": FORBIDDEN_ADMIN,
                    "404": _error("not_found: no such person in this tenant."),
                    "415": COOKIE_WRITE["415"],
                },
            }
        },
        "/api/admin/policy": {
            "get": {
                "operationId": "getPolicy",
                "tags": ["Tenant admin"],
                "summary": "The tenant's session policy (durations in seconds)",
                "security": SIGNED_IN,
                "responses": {
                    "200": _json(_ref("Policy"), "The policy."),
                    "401": ADMIN_UNAUTHORIZED,
                    "403": FORBIDDEN_ADMIN,
                },
            },
            "put": {
                "operationId": "updatePolicy",
                "tags": ["Tenant admin"],
                "summary": "Change any subset of the policy",
                "description": "All or nothing; audited with old and new values. Tightening "
                "applies to running sessions on their next request.",
                "security": SIGNED_IN,
                "requestBody": _body(_ref("PolicyChange")),
                "responses": {
                    "200": _json(_ref("Policy"), "The whole policy after the change."),
                    **BODY_ERRORS,
                    "401": ADMIN_UNAUTHORIZED,
                    "403": FORBIDDEN_ADMIN,
                },
            },
        },
        "/api/admin/retention": {
            "get": {
                "operationId": "getRetention",
                "tags": ["Tenant admin"],
                "summary": "The tenant's retention periods (days)",
                "description": "What `holdfast purge` deletes and anonymises for this tenant.",
                "security": SIGNED_IN,
                "responses": {
                    "200": _json(_ref("Retention"), "The periods."),
                    "401": ADMIN_UNAUTHORIZED,
                    "403": FORBIDDEN_ADMIN,
                },
            },
            "put": {
                "operationId": "updateRetention",
                "tags": ["Tenant admin"],
                "summary": "Change any subset of the retention periods",
                "description": "All or nothing; audited (policy.changed) with old and new "
                "values. The next `holdfast purge` applies them.",
                "security": SIGNED_IN,
                "requestBody": _body(_ref("RetentionChange")),
                "responses": {
                    "200": _json(_ref("Retention"), "All three periods after the change."),
                    **BODY_ERRORS,
                    "401": ADMIN_UNAUTHORIZED,
                    "403": FORBIDDEN_ADMIN,
                },
            },
        },
        "/auth/verify": {
            "get": {
                "operationId": "proxyVerify",
                "tags": ["Other programs"],
                "summary": "Session check for reverse proxies",
                "description": "For nginx auth_request and Traefik/Caddy forward-auth. Counts as "
                "activity. Only ever 200 or 401 (503 if Holdfast's database is "
                "down).",
                "security": SIGNED_IN,
                "responses": {
                    "200": {
                        **_json(
                            {
                                "type": "object",
                                "required": ["valid", "sessionId"],
                                "properties": {
                                    "valid": {"const": True},
                                    "sessionId": {"type": "string"},
                                },
                            },
                            "Live: identity in the headers.",
                        ),
                        "headers": {
                            name: {"schema": {"type": "string"}, "description": text}
                            for name, text in (
                                ("X-Holdfast-User", "The person's id (usr_...)."),
                                ("X-Holdfast-Email", "Email (percent-encoded UTF-8 if not ASCII)."),
                                ("X-Holdfast-Tenant", "The tenant's id (ten_...)."),
                                ("X-Holdfast-Session", "The session id (sess_...)."),
                                ("X-Holdfast-Role", "member or admin."),
                            )
                        },
                    },
                    "401": {
                        **UNAUTHORIZED,
                        "headers": {
                            "X-Holdfast-Reason": {
                                "schema": {"type": "string"},
                                "description": "Why (signed_out, unknown, logout, "
                                "revoked_by_admin, idle_expired, ...): for the proxy to "
                                "pass on to GET /auth/sign-in.",
                            }
                        },
                    },
                },
            }
        },
        "/auth/sign-in": {
            "get": {
                "operationId": "proxySignIn",
                "tags": ["Other programs"],
                "security": PUBLIC,
                "summary": "Where a reverse proxy sends a request the check refused",
                "description": "nginx `error_page 401`, Caddy `handle_response`: the refused "
                "request's URI in `X-Forwarded-Uri` and the check's `X-Holdfast-Reason`. A "
                "browser is redirected to `/login?next=` with the URI URL-encoded (a local "
                "path only); htmx gets 204 with `HX-Redirect`; a program (a bearer token, "
                "or asking for JSON) gets the 401 error.",
                "parameters": [
                    {
                        "name": name,
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": text,
                    }
                    for name, text in (
                        ("X-Forwarded-Uri", "The refused request's URI, set by the proxy."),
                        ("X-Holdfast-Reason", "What /auth/verify's 401 said, passed on."),
                    )
                ],
                "responses": {
                    "204": {"description": "htmx: HX-Redirect names the sign-in page."},
                    "302": {"description": "A browser: to the sign-in page and back."},
                    "401": UNAUTHORIZED,
                },
            }
        },
        "/.well-known/jwks.json": {
            "get": {
                "operationId": "jwks",
                "tags": ["Other programs"],
                "security": PUBLIC,
                "summary": "Public keys for verifying session tokens offline",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["keys"],
                            "properties": {
                                "keys": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["kty", "crv", "x", "y", "kid", "alg", "use"],
                                        "properties": {
                                            "kty": {"const": "EC"},
                                            "crv": {"const": "P-256"},
                                            "x": {"type": "string"},
                                            "y": {"type": "string"},
                                            "kid": {"type": "string"},
                                            "alg": {"const": "ES256"},
                                            "use": {"const": "sig"},
                                        },
                                    },
                                }
                            },
                        },
                        "A JWK Set: the signing key and retired keys still verifying.",
                    )
                },
            }
        },
    }


# --- passkeys (issue 24): one block, for the lead to port -----------------------------------


def _passkey_paths() -> dict[str, Any]:
    """The passkey operations (app.web.passkeys). Options are in the WebAuthn JSON form
    (what PublicKeyCredential.parseCreationOptionsFromJSON / parseRequestOptionsFromJSON
    take); credentials in the form PublicKeyCredential.toJSON() gives."""
    options = {
        "type": "object",
        "required": ["challengeId", "publicKey"],
        "properties": {
            "challengeId": {"type": "string"},
            "publicKey": {
                "type": "object",
                "description": "WebAuthn options in JSON form (challenge base64url, rpId, "
                "timeout, userVerification, allowCredentials or user/excludeCredentials).",
            },
        },
    }
    credential = {
        "type": "object",
        "description": "The browser's answer: PublicKeyCredential.toJSON().",
        "properties": {"id": {"type": "string"}, "rawId": {"type": "string"}},
    }
    passkey = {
        "type": "object",
        "required": ["id", "name", "createdAt", "lastUsedAt"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "createdAt": DATE_TIME,
            "lastUsedAt": {**DATE_TIME, "type": ["string", "null"]},
            "createdOn": {"type": ["string", "null"], "description": "Device it was added on."},
            "lastUsedOn": {"type": ["string", "null"], "description": "Device last used on."},
            "synced": {"type": "boolean", "description": "May sync to other devices."},
        },
    }
    refused = _error(
        "invalid_passkey: the challenge is unknown, used or expired, or the passkey is "
        "unknown, removed, of another tenant, failed verification or looks cloned; or "
        "bad_request."
    )
    return {
        "/api/auth/passkey/options": {
            "post": {
                "operationId": "passkeySignInOptions",
                "tags": ["Sign-in"],
                "security": PUBLIC,
                "summary": "Request options for a passkey sign-in",
                "description": "A single-use challenge (5 minutes) for any discoverable "
                "passkey of this site (allowCredentials empty). tenant (a slug) limits the "
                "sign-in to that tenant's accounts.",
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "tenant": {"type": ["string", "null"], "maxLength": 64}
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(options, "Request options."),
                    **BODY_ERRORS,
                    "429": _error("rate_limited: too many from this network; see Retry-After."),
                },
            }
        },
        "/api/auth/passkey/verify": {
            "post": {
                "operationId": "passkeySignIn",
                "tags": ["Sign-in"],
                "security": PUBLIC,
                "summary": "Exchange a passkey answer for a session and its token",
                "description": "No emailed code and no second step: a passkey with user "
                "verification is both factors. Answers as POST /api/auth/verify; in deny "
                "mode at the limit 409 with the sessions (run a new ceremony with "
                "endSessionId).",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["challengeId", "credential"],
                        "properties": {
                            "challengeId": {"type": "string", "maxLength": 64},
                            "credential": credential,
                            "deviceId": {"type": ["string", "null"], "maxLength": 200},
                            "deviceName": {"type": ["string", "null"], "maxLength": 100},
                            "deviceType": {
                                "type": ["string", "null"],
                                "enum": [*DEVICE_KINDS, None],
                            },
                            "expiresIn": {"type": ["integer", "null"], "minimum": MIN_EXPIRES_IN},
                            "extendOnActivity": {"type": ["boolean", "null"]},
                            "endSessionId": {"type": ["string", "null"], "maxLength": 40},
                        },
                    }
                ),
                "responses": {
                    "201": _json(_ref("SignedIn"), "Signed in."),
                    **BODY_ERRORS,
                    "400": refused,
                    "401": _error("invalid_session: the account is disabled."),
                    "403": _error("forbidden: the person's tenant does not allow passkeys."),
                    "409": _error("session_limit_reached (deny mode)."),
                },
            }
        },
        "/api/account/passkeys/options": {
            "post": {
                "operationId": "passkeyCreationOptions",
                "tags": ["Your sessions"],
                "security": SIGNED_IN,
                "summary": "Creation options for a new passkey",
                "description": "Needs a sign-in from the last 15 minutes. A discoverable "
                "credential (residentKey required), user verification required, attestation "
                "none, the caller's passkeys excluded.",
                "responses": {
                    "200": _json(options, "Creation options."),
                    "401": _error("No live session, or fresh_login_required."),
                    "403": _error("forbidden: the tenant does not allow passkeys."),
                    "422": _error("validation_error: too many passkeys."),
                    **COOKIE_WRITE,
                },
            }
        },
        "/api/account/passkeys": {
            "get": {
                "operationId": "listPasskeys",
                "tags": ["Your sessions"],
                "security": SIGNED_IN,
                "summary": "The caller's passkeys",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["passkeys"],
                            "properties": {"passkeys": {"type": "array", "items": passkey}},
                        },
                        "The caller's passkeys, oldest first.",
                    ),
                    "401": UNAUTHORIZED,
                },
            },
            "post": {
                "operationId": "addPasskey",
                "tags": ["Your sessions"],
                "security": SIGNED_IN,
                "summary": "Store a new passkey",
                "description": "Audited and mailed to the person. name defaults to the "
                "device's name.",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["challengeId", "credential"],
                        "properties": {
                            "challengeId": {"type": "string", "maxLength": 64},
                            "credential": credential,
                            "name": {"type": ["string", "null"], "maxLength": 100},
                        },
                    }
                ),
                "responses": {
                    "201": _json(passkey, "Added."),
                    **BODY_ERRORS,
                    **COOKIE_WRITE,
                    "400": refused,
                    "401": _error("No live session, or fresh_login_required."),
                    "403": _error("forbidden: the tenant does not allow passkeys."),
                },
            },
        },
        "/api/account/passkeys/{passkeyId}": {
            "delete": {
                "operationId": "removePasskey",
                "tags": ["Your sessions"],
                "security": SIGNED_IN,
                "summary": "Remove one of the caller's passkeys",
                "description": "Needs a sign-in from the last 15 minutes. Audited and mailed.",
                "parameters": [_path_id("passkeyId", "One of the caller's passkey ids.")],
                "responses": {
                    "204": {"description": "Removed."},
                    "401": _error("No live session, or fresh_login_required."),
                    "404": _error("not_found: no such passkey of the caller's."),
                    **COOKIE_WRITE,
                },
            }
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API as this server runs it."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{current_app.config['PRODUCT_NAME']} API",
            "version": __version__,  # this release (pyproject.toml)
            "description": (
                "Sessions and devices over JSON. Authenticate with Authorization: Bearer "
                "<token> (from POST /api/auth/verify) or the holdfast_session cookie. "
                "Cookie-authenticated writes must send Content-Type: application/json from "
                "this origin (Origin or Sec-Fetch-Site); bearer requests need no CSRF token. "
                'Every error is {"error", "code"} with the matching status.'
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "Sign-in", "description": "An emailed one-time code for a session token."},
            {
                "name": "Your sessions",
                "description": "The signed-in person's own sessions: status, extend, end.",
            },
            {
                "name": "Tenant admin",
                "description": "A tenant admin's view of the tenant: sessions, policy, "
                "retention (admins with a sign-in from the last 15 minutes).",
            },
            {
                "name": "Other programs",
                "description": "Reverse proxies and back ends: the session check and the "
                "public keys that verify tokens offline.",
            },
        ],
        "paths": {**_paths(), **_passkey_paths()},
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "holdfast_session"},
            },
        },
    }


@bp.get("/openapi.json")
def spec() -> Response:
    return jsonify(document())


@bp.get("/docs")
def docs() -> str:
    """The same document as a page: every operation, its input and its answers."""
    spec = document()
    operations = [
        {"method": method.upper(), "path": path, **operation}
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    ]
    tags = [tag["name"] for tag in spec["tags"]]
    return render_template(
        "api/docs.html",
        spec=spec,
        tags=tags,
        operations=operations,
        schemas=spec["components"]["schemas"],
        describe=describe_schema,
    )


@bp.get("/docs/example")
def example() -> str:
    return render_template("api/example.html")


def describe_schema(schema: dict[str, Any] | None, schemas: dict[str, Any]) -> list[dict]:
    """A schema's fields as rows for the docs page: name, type, required, notes."""
    if not schema:
        return []
    schema = _resolve(schema, schemas)
    if "allOf" in schema:
        return [row for part in schema["allOf"] for row in describe_schema(part, schemas)]
    required = set(schema.get("required", ()))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        prop = _resolve(prop, schemas)
        rows.append(
            {
                "name": name,
                "type": _type_name(prop),
                "required": name in required,
                "notes": _notes(prop),
            }
        )
    return rows


def _resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return schemas[ref.rsplit("/", 1)[1]] if ref else schema


def _type_name(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[1]
    if "const" in prop:
        return repr(prop["const"]).lower()
    kind = prop.get("type", "object")
    if "allOf" in prop:
        kind = "object"
    names = kind if isinstance(kind, list) else [kind]
    if "array" in names and "items" in prop:
        item = prop["items"]
        inner = item["$ref"].rsplit("/", 1)[1] if "$ref" in item else item.get("type", "object")
        return f"array of {inner}"
    text = " or ".join(names)
    return f"{text} ({prop['format']})" if "format" in prop else text


def _notes(prop: dict[str, Any]) -> str:
    parts = []
    if "enum" in prop:
        parts.append("one of " + ", ".join(str(v) for v in prop["enum"] if v is not None))
    if "minimum" in prop or "maximum" in prop:
        parts.append(f"{prop.get('minimum', '')}..{prop.get('maximum', '')}")
    if "maxLength" in prop:
        parts.append(f"at most {prop['maxLength']} characters")
    if "description" in prop:
        parts.append(prop["description"])
    return "; ".join(parts)
