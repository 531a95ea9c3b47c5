"""Every error a person or client can cause answers clearly: a page for people, JSON
``{"error", "code"}`` for the API and for clients that ask for JSON. Never a stack trace."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from app.core.errors import HoldfastError
from app.sealing import Unsealable

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "invalid_session",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


class Unavailable(HoldfastError):
    code, status, message = (
        "unavailable",
        503,
        "Holdfast cannot reach its database right now. Try again in a moment.",
    )


class SecretsUnavailable(HoldfastError):
    code, status, message = (
        "secrets_unavailable",
        503,
        "Holdfast cannot sign anyone in right now: its secret key does not match the one "
        "its stored keys were sealed with. The server's operator has to fix its "
        "configuration (the log and /readyz say how).",
    )


class CsrfFailed(HoldfastError):
    code, status, message = (
        "csrf_failed",
        400,
        "This form expired or came from another site. Reload the page and try again.",
    )


class InternalError(HoldfastError):
    code, status, message = (
        "internal_error",
        500,
        "Something went wrong on our side. It has been logged.",
    )


#: the heading of an error page, by error code (others: "Something is not right")
PAGE_TITLES = {"rate_limited": "Slow down"}


def wants_json() -> bool:
    if request.path.startswith(("/api/", "/auth/verify", "/session/")):
        return True
    return request.accept_mimetypes.best == "application/json"


def json_error(error: HoldfastError, status: int | None = None) -> Response:
    body = {"error": error.message, "code": error.code}
    field = getattr(error, "field", None)
    if field:
        body["field"] = field
    response = jsonify(body)
    response.status_code = status or error.status
    return response


def _page(status: int, title: str, message: str) -> Response:
    return Response(render_template("error.html", title=title, message=message), status)


def unavailable() -> Response:
    message = Unavailable.message
    if wants_json():
        response = json_error(Unavailable())
    else:
        response = Response(
            f"<!doctype html><title>Unavailable</title><h1>Unavailable</h1><p>{message}</p>",
            503,
            mimetype="text/html",
        )
    response.headers["Retry-After"] = "5"
    return response


def secrets_unavailable(error: Unsealable) -> Response:
    """503 for a request that needs a stored secret sealed with a key this deployment
    does not have (app.preflight). The operator's cause and fix go to the log (and
    /readyz); people are told it is on the server's side, not theirs."""
    log.error("stored secret cannot be opened: %s", error)
    g.rollback = True
    if wants_json():
        response = json_error(SecretsUnavailable())
    else:
        response = _page(503, "Holdfast is not configured correctly", SecretsUnavailable.message)
    response.headers["Retry-After"] = "60"
    return response


def init_app(app: Flask) -> None:
    app.register_error_handler(Unsealable, secrets_unavailable)

    @app.errorhandler(HoldfastError)
    def _holdfast(error: HoldfastError) -> Response:
        if wants_json():
            response = json_error(error)
        else:
            response = _page(
                error.status, PAGE_TITLES.get(error.code, "Something is not right"), error.message
            )
        if error.details.get("retry_after"):  # RateLimited says when to come back
            response.headers["Retry-After"] = str(error.details["retry_after"])
        return response

    @app.errorhandler(CSRFError)
    def _csrf(error: CSRFError) -> Response:
        g.rollback = True
        if wants_json():
            return json_error(CsrfFailed())
        return _page(400, "Please try again", CsrfFailed.message)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        status = error.code or 500
        if wants_json():
            response = _json(status, error.name, HTTP_CODES.get(status, "error"))
        else:
            response = _page(status, error.name, error.description or error.name)
        if status == 405 and error.get_response().headers.get("Allow"):
            response.headers["Allow"] = error.get_response().headers["Allow"]
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(DBAPIError)
    def _database(error: Exception) -> Response:
        log.error("database unavailable: %s", error)
        g.rollback = True
        return unavailable()

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unexpected error")
        g.rollback = True
        if wants_json():
            return json_error(InternalError())
        return _page(500, "Something went wrong", InternalError.message)


def _json(status: int, message: str, code: str) -> Response:
    response = jsonify({"error": message, "code": code})
    response.status_code = status
    return response
