"""Every error a person or client can cause answers clearly: a page for people, JSON
``{"error", "code"}`` for the API and for clients that ask for JSON. Never a stack trace."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from app.core.errors import N_, HoldfastError
from app.sealing import Unsealable
from app.web.extensions import login_manager
from app.web.i18n import said

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
        N_("Holdfast cannot reach its database right now. Try again in a moment."),
    )


class SecretsUnavailable(HoldfastError):
    code, status, message = (
        "secrets_unavailable",
        503,
        N_(
            "Holdfast cannot sign anyone in right now: its secret key does not match the one "
            "its stored keys were sealed with. The server's operator has to fix its "
            "configuration (the log and /readyz say how)."
        ),
    )


class CsrfFailed(HoldfastError):
    code, status, message = (
        "csrf_failed",
        400,
        N_("This form expired or came from another site. Reload the page and try again."),
    )


class InternalError(HoldfastError):
    code, status, message = (
        "internal_error",
        500,
        N_("Something went wrong on our side. It has been logged."),
    )


#: the heading of an error page, by error code (others: "Something is not right")
PAGE_TITLES = {
    "rate_limited": _l("Slow down"),
    "forbidden": _l("You cannot do that here"),
    "not_found": _l("Not found"),
    "invalid_session": _l("Please sign in again"),
    "session_expired": _l("Please sign in again"),
    "validation_error": _l("Please check what you entered"),
}

#: a page's heading and words for an HTTP status that no Holdfast error explains
#: (translated when the page is drawn)
STATUS_PAGES = {
    400: (
        _l("Please try again"),
        _l("The request did not make sense to Holdfast. Go back and try again."),
    ),
    401: (_l("Please sign in"), _l("Sign in to see this page.")),
    403: (_l("You cannot do that here"), _l("Your account is not allowed to open this page.")),
    404: (
        _l("Page not found"),
        _l("There is no page at this address. It may have moved, or the link may be mistyped."),
    ),
    405: (
        _l("This page cannot do that"),
        _l(
            "This address does not take that kind of request. Use the page's own buttons and links."
        ),
    ),
    413: (_l("Too large"), _l("What was sent is larger than Holdfast accepts.")),
    429: (_l("Slow down"), _l("Too many requests. Wait a moment, then try again.")),
}


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
    """The one error page (templates/error.html), styled like every page, for any status."""
    return Response(
        render_template("error.html", title=title, message=message, status=status), status
    )


def unavailable() -> Response:
    """503 while the database cannot be reached: JSON for the API, else the styled error
    page in the language the browser asks for. Drawing it touches no database: the
    language goes by Accept-Language alone (``g.database_down``, app.web.i18n) and a
    person not yet known to the request is drawn as signed out (loading them would ask
    the database again). Should drawing fail anyway, a plain page says the same."""
    if wants_json():
        response = json_error(Unavailable())
    else:
        g.database_down = True
        if "_login_user" not in g:  # Flask-Login's per-request user, not loaded yet
            g._login_user = login_manager.anonymous_user()
        try:
            response = _page(503, _("Holdfast is unavailable"), _(Unavailable.message))
        except Exception:  # the fallback must answer, whatever went wrong
            log.exception("the 503 page could not be drawn")
            response = Response(
                "<!doctype html><title>Unavailable</title><h1>Unavailable</h1>"
                f"<p>{Unavailable.message}</p>",
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
        response = _page(
            503, _("Holdfast is not configured correctly"), _(SecretsUnavailable.message)
        )
    response.headers["Retry-After"] = "60"
    return response


def init_app(app: Flask) -> None:
    app.register_error_handler(Unsealable, secrets_unavailable)

    @app.errorhandler(HoldfastError)
    def _holdfast(error: HoldfastError) -> Response:
        if wants_json():
            response = json_error(error)
        else:
            title = PAGE_TITLES.get(error.code) or _("Something is not right")
            response = _page(error.status, str(title), said(error))
        if error.details.get("retry_after"):  # RateLimited says when to come back
            response.headers["Retry-After"] = str(error.details["retry_after"])
        return response

    @app.errorhandler(CSRFError)
    def _csrf(error: CSRFError) -> Response:
        g.rollback = True
        if wants_json():
            return json_error(CsrfFailed())
        return _page(400, _("Please try again"), _(CsrfFailed.message))

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        status = error.code or 500
        if wants_json():
            response = _json(status, error.name, HTTP_CODES.get(status, "error"))
        else:
            title, message = STATUS_PAGES.get(status, (error.name, error.description or ""))
            response = _page(status, str(title), str(message))
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
        return _page(
            500,
            _("Something went wrong"),
            _("Something went wrong on our side. It has been logged."),
        )


def _json(status: int, message: str, code: str) -> Response:
    response = jsonify({"error": message, "code": code})
    response.status_code = status
    return response
