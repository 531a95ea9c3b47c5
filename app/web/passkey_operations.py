"""The OpenAPI words of the passkey operations (app.web.passkeys), as
app.web.api_operations writes those of the rest of the API; ``app.web.openapi`` lists
them after those. The bodies and answer shapes come from app.web.passkey_shapes."""

from __future__ import annotations

from app.web import passkey_shapes as shapes
from app.web.api_operations import (
    BODY_ERRORS,
    COOKIE_WRITE,
    PUBLIC,
    SIGNED_IN,
    UNAUTHORIZED,
    Answer,
    Operation,
    error,
)

#: the answer to a passkey that was not accepted
REFUSED = error(
    "invalid_passkey: the challenge is unknown, used or expired, or the passkey is unknown, "
    "removed, of another tenant, failed verification or looks cloned; or bad_request."
)
NOT_FRESH = error("No live session, or fresh_login_required.")
NOT_ALLOWED = error(
    "forbidden: the tenant does not allow passkeys (or a cookie-authenticated write came "
    "from another site)."
)

#: the public ids a path may carry: parameter name -> description, by operation id
PATH_IDS = {
    "removePasskey": "One of the caller's passkey ids.",
    "renamePasskey": "One of the caller's passkey ids.",
}
#: the answer to a passkey step that cannot go on
STEP_ENDED = error(
    "invalid_code: the step is unknown, used or expired, or a passkey was added meanwhile "
    "(sign in again); or bad_request."
)

SIGN_IN_OPERATIONS = (
    Operation(
        "passkeys_api.sign_in_options",
        "passkeySignInOptions",
        "Sign-in",
        "Request options for a passkey sign-in",
        PUBLIC,
        {
            "200": Answer("Request options.", shapes.OPTIONS),
            **BODY_ERRORS,
            "422": error("validation_error: tenant is not a tenant's slug (see field)."),
            "429": error("rate_limited: too many from this network; see Retry-After."),
        },
        description="A single-use challenge (5 minutes) for any discoverable passkey of this "
        "site (allowCredentials empty). tenant (a slug) limits the sign-in to that tenant's "
        "accounts. The body may be left out.",
        body=shapes.SIGN_IN_OPTIONS,
    ),
    Operation(
        "passkeys_api.sign_in_verify",
        "passkeySignIn",
        "Sign-in",
        "Exchange a passkey answer for a session and its token",
        PUBLIC,
        {
            "201": Answer("Signed in.", "SignedIn"),
            **BODY_ERRORS,
            "400": REFUSED,
            "401": error("invalid_session: the account is disabled."),
            "403": error("forbidden: the person's tenant does not allow passkeys."),
            "409": error("session_limit_reached (deny mode).", "SessionLimitError"),
        },
        description="No emailed code and no second step: a passkey with user verification "
        "is both factors (where a tenant answers 403 passkey_required to an emailed code, "
        "this is the way in). Answers as POST /api/auth/verify; in deny mode at the limit "
        "409 with the sessions (run a new ceremony with endSessionId).",
        body=shapes.SIGN_IN,
    ),
    Operation(
        "passkeys_api.enrol_options",
        "passkeyEnrolmentOptions",
        "Sign-in",
        "Creation options for the first passkey that finishes a sign-in",
        PUBLIC,
        {
            "200": Answer("Creation options.", shapes.OPTIONS),
            **BODY_ERRORS,
            "400": STEP_ENDED,
            "401": error("invalid_session: the account is disabled."),
            "403": error("forbidden: the person's tenant no longer allows passkeys."),
            "429": error("rate_limited: too many from this network; see Retry-After."),
        },
        description="Where the tenant requires passkeys and the person has none, "
        "POST /api/auth/verify (or /api/auth/verify/mfa) answers 403 "
        "passkey_enrolment_required with a stepId: the emailed code was right, and adding "
        "a passkey is the only way on. These options (a discoverable credential, user "
        "verification required, attestation none) are bound to that step; the step lives "
        "10 minutes and is used once.",
        body=shapes.ENROL_OPTIONS,
    ),
    Operation(
        "passkeys_api.enrol",
        "passkeyEnrol",
        "Sign-in",
        "Add the first passkey and finish the sign-in",
        PUBLIC,
        {
            "201": Answer("Signed in.", "SignedIn"),
            **BODY_ERRORS,
            "400": error(
                "invalid_passkey (the challenge is of another step, used or expired, or the "
                "answer failed verification: ask for new options) or invalid_code (the step "
                "has ended: sign in again)."
            ),
            "401": error("invalid_session: the account is disabled."),
            "403": error("forbidden: the person's tenant no longer allows passkeys."),
            "409": error("session_limit_reached (deny mode).", "SessionLimitError"),
        },
        description="Stores the passkey (audited and mailed to the person, as one added on "
        "the security page) and answers as POST /api/auth/verify, for the session and "
        "device the first step asked for; the session's sign-in method is "
        "passkey_added. In deny mode, if the live sessions changed since the code, 409: "
        "send the same answer again with endSessionId. The next sign-in is with the "
        "passkey (POST /api/auth/passkey/verify).",
        body=shapes.ENROL,
    ),
)

ACCOUNT_OPERATIONS = (
    Operation(
        "passkeys_api.registration_options",
        "passkeyCreationOptions",
        "Your sessions",
        "Creation options for a new passkey",
        SIGNED_IN,
        {
            "200": Answer("Creation options.", shapes.OPTIONS),
            "401": NOT_FRESH,
            "403": NOT_ALLOWED,
            "422": error("validation_error: too many passkeys."),
            "415": COOKIE_WRITE["415"],
        },
        description="Needs a sign-in from the last 15 minutes. A discoverable credential "
        "(residentKey required), user verification required, attestation none, the "
        "caller's passkeys excluded.",
    ),
    Operation(
        "passkeys_api.list_mine",
        "listPasskeys",
        "Your sessions",
        "The caller's passkeys",
        SIGNED_IN,
        {
            "200": Answer("The caller's passkeys, oldest first.", shapes.PASSKEY_LIST),
            "401": UNAUTHORIZED,
        },
    ),
    Operation(
        "passkeys_api.add",
        "addPasskey",
        "Your sessions",
        "Store a new passkey",
        SIGNED_IN,
        {
            "201": Answer("Added.", shapes.PASSKEY),
            **BODY_ERRORS,
            "400": REFUSED,
            "401": NOT_FRESH,
            "403": NOT_ALLOWED,
            "415": COOKIE_WRITE["415"],
        },
        description="Audited and mailed to the person. name defaults to the device's name.",
        body=shapes.ADD,
    ),
    Operation(
        "passkeys_api.rename",
        "renamePasskey",
        "Your sessions",
        "Rename one of the caller's passkeys",
        SIGNED_IN,
        {
            "200": Answer("Renamed.", shapes.PASSKEY),
            **BODY_ERRORS,
            "401": UNAUTHORIZED,
            "404": error("not_found: no such passkey of the caller's."),
            "422": error("validation_error: name is empty or over 100 characters (see field)."),
            "403": COOKIE_WRITE["403"],
        },
        description="Audited (passkey.renamed). Spaces in the name are collapsed, as on "
        "the security page.",
        body=shapes.RENAME,
    ),
    Operation(
        "passkeys_api.delete",
        "removePasskey",
        "Your sessions",
        "Remove one of the caller's passkeys",
        SIGNED_IN,
        {
            "204": Answer("Removed."),
            "401": NOT_FRESH,
            "404": error("not_found: no such passkey of the caller's."),
            **COOKIE_WRITE,
        },
        description="Needs a sign-in from the last 15 minutes. Audited and mailed.",
    ),
)

#: every passkey operation, in the order the document lists them
OPERATIONS = (*SIGN_IN_OPERATIONS, *ACCOUNT_OPERATIONS)
