"""Errors a caller must be able to tell apart, each with its public code and HTTP status."""

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
