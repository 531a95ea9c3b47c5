"""Where a request that needs a live session and has none is sent: to the sign-in page,
back to where it was afterwards, or a 401 for a program."""

from __future__ import annotations

from flask import Response, redirect, request, url_for

from app.core.errors import HoldfastError
from app.core.sessions import END_MESSAGES
from app.web.authentication import sends_bearer
from app.web.errors import json_error, wants_json


def send_to_sign_in(error: HoldfastError, come_back_to: str | None) -> Response:
    """The answer to a request that needs a live session and has none (``error`` says
    why): a program (a bearer token, or a request for JSON) gets the JSON error with 401
    and ``WWW-Authenticate``, since it cannot follow a sign-in page; htmx gets 204 with
    ``HX-Redirect``; a browser is redirected to the sign-in page, with ``next`` (a local
    path, URL-encoded) to come back to ``come_back_to`` afterwards. Also what
    ``GET /auth/sign-in`` answers for a reverse proxy (app.web.proxy)."""
    if wants_json() or sends_bearer(request):
        response = json_error(error, status=401)
        response.headers["WWW-Authenticate"] = 'Bearer realm="holdfast"'
        return response
    reason = error.details.get("reason")
    target = url_for(
        "auth.login",
        reason=reason if reason in END_MESSAGES else None,
        next=come_back_to,
    )
    if request.headers.get("HX-Request"):
        response = Response(status=204)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)  # type: ignore[return-value]
