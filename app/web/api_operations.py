"""The words of the API's OpenAPI document: for each operation, the view it documents
(its path and method come from that view's route), its tag, summary, description,
security, and a sentence for each answer. The shapes come from app.web.api_shapes, the
error codes from the error classes; only what no code can say is written here.
``app.web.openapi`` assembles the document."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.web import api_shapes as shapes
from app.web.api_fields import Body, Param, SettingsBody, ref


@dataclass(frozen=True)
class Answer:
    """One response: a sentence, and the JSON it carries (a schema, or the name of a
    component schema); ``headers`` maps a header name to its description."""

    description: str
    schema: dict[str, Any] | str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def error(description: str, schema: str = "Error") -> Answer:
    return Answer(description, schema)


@dataclass(frozen=True)
class Operation:
    endpoint: str  # the Flask endpoint that serves it: its route gives path and method
    id: str
    tag: str
    summary: str
    security: list[dict[str, list[str]]]
    answers: dict[str, Answer]
    description: str | None = None
    body: Body | SettingsBody | None = None
    params: tuple[Param, ...] = ()
    #: header parameters: name -> description
    header_params: dict[str, str] = field(default_factory=dict)


TAGS = {
    "Sign-in": "An emailed one-time code, or a passkey, for a session token.",
    "Your sessions": "The signed-in person's own sessions (status, extend, end) and passkeys.",
    "Tenant admin": "A tenant admin's view of the tenant: sessions, policy, retention (admins "
    "with a sign-in from the last 15 minutes).",
    "Other programs": "Reverse proxies and back ends: the session check and the public keys "
    "that verify tokens offline.",
}

SUMMARY = (
    "Sessions and devices over JSON. Authenticate with Authorization: Bearer <token> (from "
    "POST /api/auth/verify) or the holdfast_session cookie. Cookie-authenticated writes must "
    "send Content-Type: application/json from this origin (Origin or Sec-Fetch-Site); bearer "
    'requests need no CSRF token. Every error is {"error", "code"} with the matching status.'
)

SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "holdfast_session"},
}
SIGNED_IN: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"cookieAuth": []}]
#: an operation anyone may call: OpenAPI's way to say no credentials are needed
PUBLIC: list[dict[str, list[str]]] = []

#: the public ids a path may carry: parameter name -> description, by operation id
PATH_IDS = {
    "endSession": "One of the caller's session ids.",
    "adminEndSession": "A session of the admin's tenant.",
    "adminEndUserSessions": "A person of the admin's tenant.",
}

UNAUTHORIZED = error(
    "No live session: invalid_session (unknown, ended, revoked, bad token) or session_expired."
)
ADMIN_UNAUTHORIZED = error(
    "No live session, or fresh_login_required: admin routes need a code entered in the last "
    "15 minutes (sign in again)."
)
FORBIDDEN_ADMIN = error(
    "forbidden: the caller is not a tenant admin (or a cookie write came from another site)."
)
COOKIE_WRITE = {
    "403": error("forbidden: a cookie-authenticated write came from another site."),
    "415": error("unsupported_media_type: cookie-authenticated writes must send JSON."),
}
BODY_ERRORS = {
    "400": error("bad_request: the body is not a JSON object."),
    "413": error("payload_too_large: the body is over 64 KiB."),
    "415": error("unsupported_media_type: the body is not application/json."),
    "422": error(
        "validation_error: a field is missing, of the wrong type or out of range (see field)."
    ),
}
ADMIN = {"401": ADMIN_UNAUTHORIZED, "403": FORBIDDEN_ADMIN}

SIGN_IN_OPERATIONS = (
    Operation(
        "api.login",
        "login",
        "Sign-in",
        "Send a one-time code by email",
        PUBLIC,
        {
            "202": Answer("A challenge to answer with the emailed code.", shapes.CHALLENGE),
            **BODY_ERRORS,
            "429": error("rate_limited: too many codes asked for; see Retry-After."),
        },
        description="Always 202 for a well-formed address, whether or not an account exists "
        "(no answer tells). Rate limited per address and per IP like the sign-in page; 429 "
        "carries Retry-After.",
        body=shapes.LOGIN,
    ),
    Operation(
        "api.verify",
        "verify",
        "Sign-in",
        "Exchange the code for a session and its token",
        PUBLIC,
        {
            "201": Answer("Signed in.", "SignedIn"),
            **BODY_ERRORS,
            "400": error("invalid_code, challenge_locked, or bad_request."),
            "401": error(
                "mfa_required: the code was right (and is used up); answer the second step "
                "at POST /api/auth/verify/mfa with mfaChallengeId.",
                "MfaRequiredError",
            ),
            "403": Answer(
                "mfa_enrolment_required: the tenant requires an authenticator app of admins "
                "and this admin has none; they add it by signing in on the web once. "
                "passkey_required: the code was right (and is not used up) but the tenant "
                "wants this person's passkey: sign in at POST /api/auth/passkey/verify. "
                "passkey_enrolment_required (PasskeyEnrolmentError): the code was right (and "
                "is used up), the tenant requires passkeys and the person has none: add one "
                "with stepId at POST /api/auth/passkey/enrol/options and "
                "POST /api/auth/passkey/enrol, which signs in.",
                {"anyOf": [ref("Error"), ref("PasskeyEnrolmentError")]},
            ),
            "409": Answer(
                "session_limit_reached (deny mode: repeat the same code with endSessionId) or "
                "tenant_choice_required (the address has accounts in several organisations: "
                "repeat the same code with tenantId).",
                {"anyOf": [ref("SessionLimitError"), ref("TenantChoiceError")]},
            ),
        },
        description="The code works once, for 10 minutes, and dies after 5 wrong tries. "
        "deviceId is the client's own secret for its install; send it every time so the "
        "device is recognised (a new one is made and returned as deviceId when none is "
        "sent). In deny mode at the session limit the answer is 409 with the live sessions: "
        "repeat the same code with endSessionId. An address with accounts in several "
        "organisations gets 409 tenant_choice_required with its tenants: repeat the same "
        "code with tenantId. Where a second factor is needed (an authenticator app), 401 "
        "mfa_required hands over the second step.",
        body=shapes.VERIFY,
    ),
    Operation(
        "api.verify_mfa",
        "verifyMfa",
        "Sign-in",
        "Answer the second step with the app's code or a recovery code",
        PUBLIC,
        {
            "201": Answer("Signed in.", "SignedIn"),
            **BODY_ERRORS,
            "400": error(
                "invalid_code (wrong, counted; or the step is unknown, used or expired), "
                "challenge_locked (5 wrong codes: sign in again), or bad_request."
            ),
            "401": error("invalid_session: the account was disabled meanwhile."),
            "403": error(
                "passkey_enrolment_required: the code was right (and the step is used up), "
                "the tenant requires passkeys and the person has none: add one with stepId "
                "at POST /api/auth/passkey/enrol/options and POST /api/auth/passkey/enrol.",
                "PasskeyEnrolmentError",
            ),
            "409": error("session_limit_reached (deny mode).", "SessionLimitError"),
        },
        description="For people with an authenticator app (and admins of tenants that "
        "require one) the emailed code is only the first step: POST /api/auth/verify "
        "answers 401 mfa_required with an mfaChallengeId. Send it here with the app's "
        "current 6-digit code, or one of the person's single-use recovery codes "
        "(xxxxx-xxxxx). The session is the one the first step asked for (device, "
        "expiresIn, extendOnActivity). The step lives 10 minutes and dies after 5 wrong "
        "codes (sign in again). Each app code and recovery code works once; a recovery "
        "code's use is audited and mailed to the person. Where the tenant requires passkeys "
        "of a person who has one, only a recovery code is accepted (methods lists what is).",
        body=shapes.VERIFY_MFA,
    ),
)

OWN_SESSION_OPERATIONS = (
    Operation(
        "api.session_status",
        "sessionStatus",
        "Your sessions",
        "Is the caller's session live, and until when",
        SIGNED_IN,
        {
            "200": Answer("The session is live.", shapes.SESSION_STATUS),
            "401": error("Not live: invalid_session or session_expired.", "StatusError"),
        },
        description="Not counted as activity: polling it never keeps a session alive.",
    ),
    Operation(
        "api.extend",
        "extendSession",
        "Your sessions",
        "Count as activity and get a fresh token",
        SIGNED_IN,
        {
            "200": Answer(
                "The deadline now in force and a new token for the same session.",
                shapes.EXTENDED,
            ),
            "401": UNAUTHORIZED,
            **COOKIE_WRITE,
        },
        description="Moves the idle deadline like any request (at most once a minute, never "
        "past the absolute deadline, never for a session signed in with extendOnActivity "
        "false).",
    ),
    Operation(
        "api.logout",
        "logout",
        "Your sessions",
        "End the current session",
        SIGNED_IN,
        {"204": Answer("Signed out."), "401": UNAUTHORIZED, **COOKIE_WRITE},
    ),
    Operation(
        "api.own_sessions",
        "listSessions",
        "Your sessions",
        "The caller's live sessions",
        SIGNED_IN,
        {"200": Answer("Current device first.", shapes.SESSION_LIST), "401": UNAUTHORIZED},
    ),
    Operation(
        "api.end_other_sessions",
        "endOtherSessions",
        "Your sessions",
        "End every session but the current one",
        SIGNED_IN,
        {"200": Answer("How many ended.", shapes.REVOKED), "401": UNAUTHORIZED, **COOKIE_WRITE},
    ),
    Operation(
        "api.end_own_session",
        "endSession",
        "Your sessions",
        "End one of the caller's sessions",
        SIGNED_IN,
        {
            "204": Answer("Ended (or had ended already)."),
            "401": UNAUTHORIZED,
            "404": error("not_found: no such session of the caller's."),
            **COOKIE_WRITE,
        },
    ),
)

ADMIN_OPERATIONS = (
    Operation(
        "api.admin_sessions",
        "adminListSessions",
        "Tenant admin",
        "The tenant's sessions, filtered, a page at a time",
        SIGNED_IN,
        {
            "200": Answer("One page, newest first.", shapes.ADMIN_SESSION_PAGE),
            **ADMIN,
            "422": error("validation_error: a filter is not valid (see field)."),
        },
        description="Keyset pagination: pass nextCursor back as cursor. Needs the admin role "
        "and a code entered in the last 15 minutes.",
        params=shapes.ADMIN_SESSIONS_QUERY,
    ),
    Operation(
        "api.admin_end_session",
        "adminEndSession",
        "Tenant admin",
        "End any session of the tenant",
        SIGNED_IN,
        {
            "204": Answer("Ended (or had ended already)."),
            **ADMIN,
            "404": error("not_found: no such session in this tenant."),
            "415": COOKIE_WRITE["415"],
        },
    ),
    Operation(
        "api.admin_end_user_sessions",
        "adminEndUserSessions",
        "Tenant admin",
        "End every live session of one person",
        SIGNED_IN,
        {
            "200": Answer("How many ended.", shapes.REVOKED),
            **ADMIN,
            "404": error("not_found: no such person in this tenant."),
            "415": COOKIE_WRITE["415"],
        },
    ),
    Operation(
        "api.get_policy",
        "getPolicy",
        "Tenant admin",
        "The tenant's session policy (durations in seconds)",
        SIGNED_IN,
        {"200": Answer("The policy.", "Policy"), **ADMIN},
    ),
    Operation(
        "api.put_policy",
        "updatePolicy",
        "Tenant admin",
        "Change any subset of the policy",
        SIGNED_IN,
        {"200": Answer("The whole policy after the change.", "Policy"), **BODY_ERRORS, **ADMIN},
        description="All or nothing; audited with old and new values. Tightening applies to "
        "running sessions on their next request.",
        body=shapes.POLICY,
    ),
    Operation(
        "api.get_retention",
        "getRetention",
        "Tenant admin",
        "The tenant's retention periods (days)",
        SIGNED_IN,
        {"200": Answer("The periods.", "Retention"), **ADMIN},
        description="What `holdfast purge` deletes and anonymises for this tenant.",
    ),
    Operation(
        "api.put_retention",
        "updateRetention",
        "Tenant admin",
        "Change any subset of the retention periods",
        SIGNED_IN,
        {
            "200": Answer("All three periods after the change.", "Retention"),
            **BODY_ERRORS,
            **ADMIN,
        },
        description="All or nothing; audited (policy.changed) with old and new values. The "
        "next `holdfast purge` applies them.",
        body=shapes.RETENTION,
    ),
)

OTHER_PROGRAM_OPERATIONS = (
    Operation(
        "proxy.verify",
        "proxyVerify",
        "Other programs",
        "Session check for reverse proxies",
        SIGNED_IN,
        {
            "200": Answer(
                "Live: identity in the headers.",
                shapes.PROXY_VERIFIED,
                headers={
                    "X-Holdfast-User": "The person's id (usr_...).",
                    "X-Holdfast-Email": "Email (percent-encoded UTF-8 if not ASCII).",
                    "X-Holdfast-Tenant": "The tenant's id (ten_...).",
                    "X-Holdfast-Session": "The session id (sess_...).",
                    "X-Holdfast-Role": "member or admin.",
                },
            ),
            "401": Answer(
                UNAUTHORIZED.description,
                UNAUTHORIZED.schema,
                headers={
                    "X-Holdfast-Reason": "Why (signed_out, unknown, logout, revoked_by_admin, "
                    "idle_expired, ...): for the proxy to pass on to GET /auth/sign-in."
                },
            ),
        },
        description="For nginx auth_request and Traefik/Caddy forward-auth. Counts as "
        "activity. Only ever 200 or 401 (503 if Holdfast's database is down).",
    ),
    Operation(
        "proxy.sign_in",
        "proxySignIn",
        "Other programs",
        "Where a reverse proxy sends a request the check refused",
        PUBLIC,
        {
            "204": Answer("htmx: HX-Redirect names the sign-in page."),
            "302": Answer("A browser: to the sign-in page and back."),
            "401": UNAUTHORIZED,
        },
        description="nginx `error_page 401`, Caddy `handle_response`: the refused request's "
        "URI in `X-Forwarded-Uri` and the check's `X-Holdfast-Reason`. A browser is "
        "redirected to `/login?next=` with the URI URL-encoded (a local path only); htmx "
        "gets 204 with `HX-Redirect`; a program (a bearer token, or asking for JSON) gets "
        "the 401 error.",
        header_params={
            "X-Forwarded-Uri": "The refused request's URI, set by the proxy.",
            "X-Holdfast-Reason": "What /auth/verify's 401 said, passed on.",
        },
    ),
    Operation(
        "proxy.jwks",
        "jwks",
        "Other programs",
        "Public keys for verifying session tokens offline",
        PUBLIC,
        {
            "200": Answer(
                "A JWK Set: the signing key and retired keys still verifying.", shapes.JWKS
            )
        },
    ),
)

#: every operation, in the order the document lists them
OPERATIONS = (
    *SIGN_IN_OPERATIONS,
    *OWN_SESSION_OPERATIONS,
    *ADMIN_OPERATIONS,
    *OTHER_PROGRAM_OPERATIONS,
)
