"""Errors a caller must be able to tell apart, each with its public code and HTTP status.

Every error a person or client can be answered with is a subclass of HoldfastError, here
or beside the rule that raises it (``app.core.access.FreshSignInRequired``,
``app.web.errors.Unavailable``...): :func:`known_errors` finds them all, and the
API's OpenAPI document lists their codes from it.

Words: an error's message is English with ``%(name)s`` placeholders, marked with
:func:`N_` so ``make messages`` puts it in the translation catalog; the values travel
apart (``words``), so the web layer can say the message in the page's language
(``app.web.i18n.said``) while ``message`` stays the English text the JSON API, the CLI and
the logs use. Plurals pass ``plural`` and ``count`` (one English form for 1, the other for
any other number; the catalog holds each language's forms; mark them with :func:`N_plural`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# the core's words are marked with these (app.i18n) and translated by the web layer
from app.i18n import N_ as N_
from app.i18n import N_plural as N_plural


class Phrase(str):
    """A placeholder value that is itself English words of the catalog (a setting's label,
    marked with :func:`N_` where it is defined): the page translates it when it fills the
    placeholder (``app.web.i18n.said``); the English message keeps it as it is."""

    __slots__ = ()


class HoldfastError(Exception):
    code = "error"
    status = 400
    message = N_("Something went wrong")

    def __init__(
        self,
        message: str | None = None,
        *,
        words: Mapping[str, object] | None = None,
        plural: str | None = None,
        count: int | None = None,
        **details: Any,
    ) -> None:
        #: the untranslated message (``plural`` is its form for any count but 1)
        self.template = message or type(self).message
        self.plural = plural
        self.count = count
        #: the values of the message's placeholders (``count`` is one of them as ``num``)
        self.words: dict[str, object] = dict(words or {})
        if count is not None:
            self.words.setdefault("num", count)
        chosen = plural if plural is not None and count != 1 else self.template
        self.message = chosen % self.words if self.words else chosen
        super().__init__(self.message)
        self.details = details


class ValidationError(HoldfastError):
    code, status, message = "validation_error", 422, N_("Invalid input")

    def __init__(self, message: str | None = None, *, field: str | None = None, **details: Any):
        super().__init__(message, **details)
        self.field = field


class InvalidCode(HoldfastError):
    code, status, message = (
        "invalid_code",
        400,
        N_("That code is not right. Check it and try again."),
    )

    @classmethod
    def tries_left(cls, left: int) -> InvalidCode:
        """A wrong code with ``left`` tries still to go (``details["attempts_left"]``)."""
        one, other = N_plural(
            "That code is not right. %(num)s try left.",
            "That code is not right. %(num)s tries left.",
        )
        return cls(
            one,
            plural=other,
            count=left,
            attempts_left=left,
        )


class ChallengeLocked(HoldfastError):
    code, status, message = (
        "challenge_locked",
        400,
        N_("Too many wrong codes. Ask for a new code."),
    )


class SessionExpired(HoldfastError):
    code, status, message = "session_expired", 401, N_("Session expired")


class InvalidSession(HoldfastError):
    code, status, message = "invalid_session", 401, N_("Invalid session")


class SessionLimitReached(HoldfastError):
    code, status, message = "session_limit_reached", 409, N_("Session limit reached")


class RateLimited(HoldfastError):
    code, status, message = "rate_limited", 429, N_("Too many requests")


class Forbidden(HoldfastError):
    code, status, message = "forbidden", 403, N_("Forbidden")


class NotFound(HoldfastError):
    code, status, message = "not_found", 404, N_("Not found")


class TenantChoiceRequired(HoldfastError):
    """The code was right and the address has accounts in several organisations: the
    caller repeats the same code naming one (``details["tenants"]``)."""

    code, status, message = (
        "tenant_choice_required",
        409,
        N_("Your address belongs to more than one organisation. Choose the one to sign in to."),
    )


class MfaRequired(HoldfastError):
    """The emailed code was right (and is used up); the second step comes next:
    ``details["step"]`` is the app.models.MfaChallenge to answer."""

    code, status, message = (
        "mfa_required",
        401,
        N_(
            "Enter the code your authenticator app shows, or one of your recovery codes, to "
            "finish signing in."
        ),
    )


class MfaEnrolmentRequired(HoldfastError):
    """The emailed code was right, the tenant requires an authenticator app of admins,
    and this admin has none: adding one is the second step (``details["step"]``)."""

    code, status, message = (
        "mfa_enrolment_required",
        403,
        N_(
            "Your organisation requires admins to use an authenticator app, and you have not "
            "added one yet. Sign in on the web to add it; it is asked for every sign-in after."
        ),
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
