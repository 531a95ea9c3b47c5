"""The JSON API's CSRF rule, instead of Flask-WTF's form tokens (which the API is exempt
from).

A write that rides on the session cookie (no ``Authorization: Bearer`` header) must
declare a JSON content type (415 otherwise: a cross-site form cannot send one without a
CORS preflight, which Holdfast never grants) and come from this origin by
``Sec-Fetch-Site`` or ``Origin`` (403 otherwise). Bearer requests need neither: another
site cannot make a browser attach that header. Bodies over MAX_CONTENT_LENGTH are
refused first, on every route, with 413.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from app.core.errors import Forbidden
from app.web.cookies import SESSION_COOKIE
from app.web.json_input import UnsupportedMediaType
from app.web.unit_of_work import SAFE_METHODS


def guard(bp: Blueprint) -> None:
    """Run the rule before every view of ``bp``."""
    bp.before_request(refuse_huge_bodies)
    bp.before_request(cookie_writes_come_from_this_origin)


def refuse_huge_bodies() -> None:
    """413 for any body over MAX_CONTENT_LENGTH, also on routes that would not read it."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit and (request.content_length or 0) > limit:
        raise RequestEntityTooLarge()


def cookie_writes_come_from_this_origin() -> None:
    """Writes authenticated by the session cookie must be JSON from this origin. Raises
    UnsupportedMediaType (415) or Forbidden (403)."""
    if request.method in SAFE_METHODS or has_bearer() or not request.cookies.get(SESSION_COOKIE):
        return
    if not request.is_json:
        raise UnsupportedMediaType(
            "Requests signed in by cookie must send Content-Type: application/json."
        )
    if not _same_origin():
        raise Forbidden("This request came from another site.")


def has_bearer() -> bool:
    """Whether the request authenticates with ``Authorization: Bearer``."""
    return request.headers.get("Authorization", "")[:7].lower() == "bearer "


def _same_origin() -> bool:
    """Sec-Fetch-Site when the browser sends it, else Origin against this host and the
    configured base URL. A request with neither is refused: browsers send at least one
    on every write, and other clients should use a bearer token."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site == "same-origin"
    sent = request.headers.get("Origin")
    if not sent:
        return False
    allowed = {_origin_of(request.host_url), _origin_of(current_app.config["BASE_URL"])}
    return _origin_of(sent) in allowed - {None}


def _origin_of(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. "http://[::1" is no origin at all
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()
