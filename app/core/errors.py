"""Errors a caller must be able to tell apart, each with its public code and HTTP status.

Every error a person or client can be answered with is a subclass of HoldfastError, here
or beside the rule that raises it (``app.core.access.FreshSignInRequired``,
``app.web.errors.Unavailable``...): :func:`known_errors` finds them all, and the
API's OpenAPI document lists their codes from it."""

from __future__ import annotations

from typing import Any


class HoldfastError(Exception):
    code = "error"
    status = 400
    message = "Something went wrong"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details


class ValidationError(HoldfastError):
    code, status, message = "validation_error", 422, "Invalid input"

    def __init__(self, message: str | None = None, *, field: str | None = None, **details: Any):
        super().__init__(message, **details)
        self.field = field


class InvalidCode(HoldfastError):
    code, status, message = "invalid_code", 400, "That code is not right. Check it and try again."


class ChallengeLocked(HoldfastError):
    code, status, message = (
        "challenge_locked",
        400,
        "Too many wrong codes. Ask for a new code.",
    )


class SessionExpired(HoldfastError):
    code, status, message = "session_expired", 401, "Session expired"


class InvalidSession(HoldfastError):
    code, status, message = "invalid_session", 401, "Invalid session"


class SessionLimitReached(HoldfastError):
    code, status, message = "session_limit_reached", 409, "Session limit reached"


class RateLimited(HoldfastError):
    code, status, message = "rate_limited", 429, "Too many requests"


class Forbidden(HoldfastError):
    code, status, message = "forbidden", 403, "Forbidden"


class NotFound(HoldfastError):
    code, status, message = "not_found", 404, "Not found"


class TenantChoiceRequired(HoldfastError):
    """The code was right and the address has accounts in several organisations: the
    caller repeats the same code naming one (``details["tenants"]``)."""

    code, status, message = (
        "tenant_choice_required",
        409,
        "Your address belongs to more than one organisation. Choose the one to sign in to.",
    )


class MfaRequired(HoldfastError):
    """The emailed code was right (and is used up); the second step comes next:
    ``details["step"]`` is the app.models.MfaChallenge to answer."""

    code, status, message = (
        "mfa_required",
        401,
        "Enter the code your authenticator app shows, or one of your recovery codes, to "
        "finish signing in.",
    )


class MfaEnrolmentRequired(HoldfastError):
    """The emailed code was right, the tenant requires an authenticator app of admins,
    and this admin has none: adding one is the second step (``details["step"]``)."""

    code, status, message = (
        "mfa_enrolment_required",
        403,
        "Your organisation requires admins to use an authenticator app, and you have not "
        "added one yet. Sign in on the web to add it; it is asked for every sign-in after.",
    )


def known_errors() -> list[type[HoldfastError]]:
    """Every concrete error class of the modules imported so far (subclasses at any depth,
    each once, in the order they were defined). A running app has imported every module
    that raises one; tests/test_api_contract.py imports all of ``app`` to check that."""
    found: list[type[HoldfastError]] = []
    pending = list(HoldfastError.__subclasses__())
    while pending:
        error = pending.pop(0)
        if error not in found:
            found.append(error)
            pending.extend(error.__subclasses__())
    return [error for error in found if error.code != HoldfastError.code]
