"""What the JSON API reads and answers, declared once: the request bodies and query
strings (field tables from app.web.api_fields, which the views read their input with),
the answers' JSON Schemas, and the serialisers that build those answers beside them.
``app.web.openapi`` publishes all of it; tests/test_schemathesis.py checks the answers
against it."""

from __future__ import annotations

from typing import Any

from app.core import admin, paging, policy, retention, sessions, signin
from app.core.errors import (
    MfaRequired,
    SessionLimitReached,
    TenantChoiceRequired,
    ValidationError,
)
from app.core.passkey_rules import PasskeyEnrolmentRequired
from app.core.sessions import Current
from app.models import END_REASONS, ROLES, Device, MfaChallenge, User, UserSession
from app.user_agents import DEVICE_KINDS
from app.web.api_fields import DATE_TIME, Body, Field, Param, SettingsBody, ref
from app.web.json_input import utc
from app.web.session_status import iso
from app.web.unit_of_work import now

#: the longest session any policy allows; a longer expiresIn means "as long as allowed"
LONGEST_SESSION = 366 * 86400
#: the form of every public id (sess_..., usr_...) a path may carry
PUBLIC_ID = "^[a-z]{3,4}_[A-Za-z0-9_-]{1,36}$"


def obj(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    """An object schema; ``required`` defaults to every property."""
    return {
        "type": "object",
        "required": list(required or properties),
        "properties": properties,
    }


# --- request bodies --------------------------------------------------------------------------

LOGIN = Body(
    Field(
        "email",
        str,
        required=True,
        max_length=320,
        doc={"format": "email", "examples": ["sam@example.com"]},
    )
)

VERIFY = Body(
    Field("challengeId", str, required=True, max_length=64),
    Field("code", str, required=True, max_length=32, doc={"examples": ["123456"]}),
    Field("deviceId", str, max_length=200),
    Field("deviceName", str, max_length=100),
    Field("deviceType", str, max_length=20, doc={"enum": list(DEVICE_KINDS)}),
    Field(
        "expiresIn",
        int,
        doc={
            "minimum": signin.MIN_EXPIRES_IN,
            "description": "Ask for a shorter session (seconds); never longer than the "
            "policy allows.",
        },
    ),
    Field("extendOnActivity", bool),
    Field("endSessionId", str, max_length=40),
    Field(
        "tenantId",
        str,
        max_length=40,
        doc={
            "description": "The organisation to sign in to, for an address with accounts "
            "in several (see the 409 tenant_choice_required answer)."
        },
    ),
)

VERIFY_MFA = Body(
    Field("mfaChallengeId", str, required=True, max_length=64),
    Field(
        "code",
        str,
        max_length=32,
        doc={"description": "The authenticator app's code now.", "examples": ["123456"]},
    ),
    Field(
        "recoveryCode",
        str,
        max_length=32,
        doc={
            "description": "One of the person's recovery codes, instead of code (send one "
            "of the two).",
            "examples": ["abcde-fghjk"],
        },
    ),
    Field(
        "endSessionId",
        str,
        max_length=40,
        doc={"description": "deny mode, when the live sessions changed since the first step."},
    ),
)


def _policy_properties() -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for setting in policy.FIELDS:
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
    return properties


def _retention_properties() -> dict[str, Any]:
    return {
        api_name: {
            "type": "integer",
            "minimum": retention.LOWEST,
            "maximum": retention.HIGHEST,
            "description": f"{retention.LABELS[name]} this many days "
            f"(default {retention.DEFAULTS[name]}).",
        }
        for name, api_name in retention.API_NAMES.items()
    }


POLICY = SettingsBody(
    "Policy",
    "policy setting",
    {api: setting.name for api, setting in policy.BY_API_NAME.items()},
    _policy_properties,
    "Any subset of the policy; all or nothing. Idle timeout may not exceed the absolute lifetime.",
)
RETENTION = SettingsBody(
    "Retention",
    "retention setting",
    {api: name for name, api in retention.API_NAMES.items()},
    _retention_properties,
    "Any subset of the periods; all or nothing.",
)


# --- query strings ---------------------------------------------------------------------------


def _check_cursor(cursor: str) -> None:
    """A hand-made cursor whose time cannot be stored is a validation error, not a
    database error: checked before the query is built."""
    moment, _row_id = paging.decode_cursor(cursor)
    try:
        utc(moment)
    except OverflowError as error:
        raise ValidationError("That page cursor is not valid.", field="cursor") from error


_TEXT = {"type": "string", "maxLength": 200}

ADMIN_SESSIONS_QUERY = (
    Param(
        "status",
        {"type": "string", "enum": list(admin.STATUSES)},
        "live (default), ended or all.",
    ),
    Param("userId", _TEXT, "One person's id.", target="user_id"),
    Param("q", _TEXT, "Text in the person's email or the device name."),
    Param("kind", {"type": "string", "enum": list(DEVICE_KINDS)}, "Device type."),
    Param("os", _TEXT, "Operating system."),
    Param("browser", _TEXT, "Browser."),
    Param("ipPrefix", _TEXT, "Start of the IP.", target="ip_prefix"),
    Param("signedInFrom", DATE_TIME, "Signed in at or after.", target="signed_in_from"),
    Param("signedInTo", DATE_TIME, "Signed in before.", target="signed_in_to"),
    Param(
        "sort",
        {"type": "string", "enum": ["lastActive", "createdAt"]},
        "Newest first by last activity (default) or by sign-in.",
        choices={"lastActive": "last_active", "createdAt": "signed_in"},
        default="lastActive",
    ),
    Param("cursor", _TEXT, "nextCursor of the previous page.", check=_check_cursor),
    Param(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": admin.MAX_PAGE},
        "Page size (default 50).",
        default="50",
    ),
)


# --- answers ---------------------------------------------------------------------------------

DEVICE_KIND = {"type": "string", "enum": list(DEVICE_KINDS)}

ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error", "code"],
    "properties": {
        "error": {"type": "string", "description": "A sentence a person can read."},
        "code": {"type": "string", "description": "Stable code a client branches on."},
        "field": {"type": "string", "description": "The input at fault (validation_error)."},
    },
}

SESSION = obj(
    {
        "id": {"type": "string", "description": "Public session id (sess_...)."},
        "device": {
            "type": "string",
            "description": 'The device\'s name, given or derived ("Chrome on macOS").',
        },
        "deviceType": DEVICE_KIND,
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
    }
)


def session_item(
    session: UserSession, device: Device, *, expires_at: Any, me: Current | None = None
) -> dict[str, Any]:
    """One session as SESSION shows it (the caller's list, the admin list, the limit)."""
    return {
        "id": session.id,
        "device": device.display_name,
        "deviceType": device.kind,
        "os": device.os,
        "browser": device.browser,
        "ip": session.ip,
        "location": session.location,
        "createdAt": iso(session.created_at),
        "lastActive": iso(session.last_seen_at),
        "expiresAt": iso(expires_at),
        "current": me is not None and session.id == me.session.id,
        "trusted": device.is_trusted(now()),
    }


ADMIN_SESSION = {
    "allOf": [
        ref("Session"),
        obj(
            {
                "endedAt": {"type": ["string", "null"], "format": "date-time"},
                "endReason": {"type": ["string", "null"], "enum": [*END_REASONS, None]},
                "user": obj(
                    {
                        "id": {"type": "string"},
                        "email": {"type": "string"},
                        "name": {"type": ["string", "null"]},
                        "role": {"type": "string", "enum": list(ROLES)},
                    }
                ),
            }
        ),
    ]
}


def admin_session_item(row: admin.SessionRow, me: Current) -> dict[str, Any]:
    """One session of the tenant as ADMIN_SESSION shows it: SESSION with its end and
    its person (``expiresAt`` is null once ended)."""
    session, device, user = row.session, row.device, row.user
    item = session_item(session, device, expires_at=None, me=me)
    if session.ended_at is None:
        item["expiresAt"] = iso(min(sessions.deadlines(session, me.tenant, device, now())))
    item["endedAt"] = iso(session.ended_at)
    item["endReason"] = session.end_reason
    item["user"] = person(user)
    return item


def person(user: User) -> dict[str, Any]:
    return {"id": user.id, "email": user.email, "name": user.name, "role": user.role}


DEVICE_INFO = obj(
    {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "type": DEVICE_KIND,
        "os": {"type": "string"},
        "browser": {"type": "string"},
        "trusted": {"type": "boolean"},
        "isNew": {"type": "boolean"},
    }
)

SIGNED_IN = obj(
    {
        "sessionId": {"type": "string"},
        "token": {
            "type": "string",
            "description": "ES256 JWT; send as Authorization: Bearer. exp is the absolute "
            "deadline.",
        },
        "expiresAt": DATE_TIME,
        "deviceId": {
            "type": "string",
            "description": "Only when a new device secret was made: keep it, send it next time.",
        },
        "deviceInfo": DEVICE_INFO,
    },
    "sessionId",
    "token",
    "expiresAt",
    "deviceInfo",
)


def signed_in(result: signin.SignIn, token: str) -> dict[str, Any]:
    """A new session as SIGNED_IN shows it (``deviceId`` only when one was made)."""
    session, device = result.session, result.device
    answer: dict[str, Any] = {
        "sessionId": session.id,
        "token": token,
        "expiresAt": iso(min(session.idle_deadline, session.absolute_deadline)),
        "deviceInfo": {
            "id": device.id,
            "name": device.display_name,
            "type": device.kind,
            "os": device.os,
            "browser": device.browser,
            "trusted": device.is_trusted(now()),
            "isNew": result.new_device,
        },
    }
    if result.device_cookie:
        answer["deviceId"] = result.device_cookie
    return answer


def _error_with(extra: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"allOf": [ref("Error"), obj(extra)]}
    if description is not None:
        schema["description"] = description
    return schema


SESSION_LIMIT_ERROR = _error_with(
    {
        "sessions": {"type": "array", "items": ref("Session")},
        "alsoEnds": {
            "type": "integer",
            "minimum": 0,
            "description": "How many other sessions signing in ends besides the chosen "
            "one: more than 0 when the limit was lowered below what the person holds (the "
            "least recently active ones, untrusted devices first).",
        },
    },
    "deny mode at the limit: repeat the same code with endSessionId set to one of these sessions.",
)


def session_limit_error(error: SessionLimitReached, devices: dict[str, Device]) -> dict[str, Any]:
    """SESSION_LIMIT_ERROR: the live sessions to choose from (``devices`` by id)."""
    live = [
        session_item(s, devices[s.device_id], expires_at=min(s.idle_deadline, s.absolute_deadline))
        for s in error.details["sessions"]
    ]
    return {
        "error": error.message,
        "code": error.code,
        "sessions": live,
        "alsoEnds": error.details.get("also_ends", 0),
    }


TENANT_CHOICE_ERROR = _error_with(
    {
        "tenants": {
            "type": "array",
            "items": obj(
                {"id": {"type": "string"}, "slug": {"type": "string"}, "name": {"type": "string"}}
            ),
        }
    },
    "The code is right and the address has accounts in several organisations: repeat the "
    "same code with tenantId set to one of these.",
)


def tenant_choice_error(error: TenantChoiceRequired) -> dict[str, Any]:
    tenants = [{"id": t.id, "slug": t.slug, "name": t.name} for t in error.details["tenants"]]
    return {"error": error.message, "code": error.code, "tenants": tenants}


MFA_METHODS = ["totp", "recovery_code"]
MFA_REQUIRED_ERROR = _error_with(
    {
        "mfaChallengeId": {"type": "string"},
        "expiresAt": DATE_TIME,
        "methods": {"type": "array", "items": {"type": "string", "enum": MFA_METHODS}},
    },
    "The emailed code was right; answer POST /api/auth/verify/mfa.",
)


def mfa_methods(step: MfaChallenge) -> list[str]:
    """What a second step accepts: only a recovery code where the tenant requires
    passkeys of a person who has one (app.core.passkey_rules), else either."""
    return ["recovery_code"] if step.options.get("recovery_only") else MFA_METHODS


def mfa_required_error(error: MfaRequired) -> dict[str, Any]:
    step = error.details["step"]
    return {
        "error": error.message,
        "code": error.code,
        "mfaChallengeId": step.id,
        "expiresAt": iso(step.expires_at),
        "methods": mfa_methods(step),
    }


PASSKEY_ENROLMENT_ERROR = _error_with(
    {"stepId": {"type": "string"}, "expiresAt": DATE_TIME},
    "The emailed code (and the app's, where the person has one) was right, the tenant "
    "requires passkeys and the person has none: add one at POST "
    "/api/auth/passkey/enrol/options, then POST /api/auth/passkey/enrol.",
)


def passkey_enrolment_error(error: PasskeyEnrolmentRequired) -> dict[str, Any]:
    step = error.details["step"]
    return {
        "error": error.message,
        "code": error.code,
        "stepId": step.id,
        "expiresAt": iso(step.expires_at),
    }


STATUS_ERROR = _error_with({"valid": {"const": False}})

CHALLENGE = obj({"challengeId": {"type": "string"}})
SESSION_STATUS = obj(
    {
        "valid": {"const": True},
        "sessionId": {"type": "string"},
        "expiresAt": DATE_TIME,
        "expiresIn": {"type": "integer", "minimum": 0},
        "deviceCount": {"type": "integer", "minimum": 0},
    }
)
EXTENDED = obj(
    {
        "token": {"type": "string"},
        "expiresAt": DATE_TIME,
        "expiresIn": {"type": "integer", "minimum": 0},
    }
)
SESSION_LIST = obj({"sessions": {"type": "array", "items": ref("Session")}})
REVOKED = obj({"revoked": {"type": "integer", "minimum": 0}})
ADMIN_SESSION_PAGE = obj(
    {
        "sessions": {"type": "array", "items": ref("AdminSession")},
        "nextCursor": {"type": ["string", "null"]},
    }
)
PROXY_VERIFIED = obj({"valid": {"const": True}, "sessionId": {"type": "string"}})
JWKS = obj(
    {
        "keys": {
            "type": "array",
            "items": obj(
                {
                    "kty": {"const": "EC"},
                    "crv": {"const": "P-256"},
                    "x": {"type": "string"},
                    "y": {"type": "string"},
                    "kid": {"type": "string"},
                    "alg": {"const": "ES256"},
                    "use": {"const": "sig"},
                }
            ),
        }
    }
)

#: the named schemas (components/schemas), in the order the document lists them
SCHEMAS: dict[str, Any] = {
    "Error": ERROR,
    "SessionLimitError": SESSION_LIMIT_ERROR,
    "SignedIn": SIGNED_IN,
    "TenantChoiceError": TENANT_CHOICE_ERROR,
    "MfaRequiredError": MFA_REQUIRED_ERROR,
    "PasskeyEnrolmentError": PASSKEY_ENROLMENT_ERROR,
    "StatusError": STATUS_ERROR,
    "Session": SESSION,
    "AdminSession": ADMIN_SESSION,
    **POLICY.components(),
    **RETENTION.components(),
}
