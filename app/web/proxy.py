"""What other programs check against: the reverse-proxy session check and the public JWKS.

``GET /auth/verify`` is for nginx ``auth_request``, Traefik ``forwardAuth`` and Caddy
``forward_auth``. It runs the request's token (cookie or bearer) through the same hot
path as every page, so it sees a revocation on the very next request and extends a live
session by the same throttled rule. It answers only 200 (with the identity headers) or
401 (with ``X-Holdfast-Reason``: why): nginx turns any other status of an auth
subrequest into a 500 for the visitor. The one exception is an outage of Holdfast's own
database (503), where no answer would be true and a 401 would send every visitor to a
sign-in page that cannot work either.

``GET /auth/sign-in`` is where the proxy sends a visitor the check refused (nginx
``error_page 401``, Caddy ``handle_response``), with the refused request's URI in
``X-Forwarded-Uri`` and the check's reason in ``X-Holdfast-Reason``. Holdfast URL-encodes
the URI into the sign-in page's ``next``, which neither proxy can do itself, so the
visitor comes back to the very page, whole query included. A program (a bearer token, or
asking for JSON) gets the 401 JSON error instead of a redirect it cannot follow.

``GET /.well-known/jwks.json`` publishes the public keys that verify session tokens
(the signing key and retired keys whose tokens may still be alive), for verifiers that
check tokens offline.
"""

from __future__ import annotations

from urllib.parse import quote

from flask import Blueprint, Response, current_app, g, jsonify, request

from app.core.errors import InvalidSession
from app.web.auth import safe_next
from app.web.authentication import authenticate
from app.web.errors import json_error
from app.web.sign_in_redirects import send_to_sign_in
from app.web.unit_of_work import services

bp = Blueprint("proxy", __name__)


@bp.get("/auth/verify")
def verify() -> Response:
    """200 with X-Holdfast-User (user id), X-Holdfast-Email, X-Holdfast-Tenant (tenant id),
    X-Holdfast-Session and X-Holdfast-Role for a live session; 401 with the JSON error
    otherwise. The email is percent-encoded (see :func:`header_email`). Answered from the
    hot path's plain row alone (no ORM objects)."""
    me = authenticate()
    if me is None:
        error = g.get("auth_error") or InvalidSession("Sign in to continue", reason="signed_out")
        response = json_error(error, status=401)
        response.headers["WWW-Authenticate"] = 'Bearer realm="holdfast"'
        # Why, for the proxy to hand to GET /auth/sign-in (the sign-in page says it).
        response.headers["X-Holdfast-Reason"] = error.details.get("reason") or "signed_out"
        return response
    facts = me.facts
    person = facts.user
    email = _HEADER_EMAILS.get(person.email) or header_email(person.email)
    # Public ids are URL-safe base64 after a prefix (app.models.new_id): nothing to escape.
    response = Response(_VALID % facts.session.id, content_type="application/json")
    response.headers.extend(
        (
            ("X-Holdfast-User", person.id),
            ("X-Holdfast-Email", email),
            ("X-Holdfast-Tenant", facts.tenant.id),
            ("X-Holdfast-Session", facts.session.id),
            ("X-Holdfast-Role", person.role),
        )
    )
    return response


_VALID = '{"valid": true, "sessionId": "%s"}'

#: What X-Holdfast-Email sends as it is: the characters of an ordinary address (letters,
#: digits and the other atext characters of RFC 5322) except "%", which encodes.
EMAIL_AS_IS = "!#$&'*+-./=?@^_`{|}~"
#: addresses already encoded, so /auth/verify looks one up (≈ 40 ns) instead of
#: encoding it again (≈ 600 ns); emptied when it reaches _HEADER_EMAILS_MAX
_HEADER_EMAILS: dict[str, str] = {}
_HEADER_EMAILS_MAX = 10_000


def header_email(email: str) -> str:
    """The address as X-Holdfast-Email carries it, by one rule for every address: its
    UTF-8 bytes percent-encoded (RFC 3986), all but the characters of
    :data:`EMAIL_AS_IS`. A reader always percent-decodes the value (``unquote``,
    ``decodeURIComponent``) and gets the address back, whatever it is; most addresses
    read the same either way. ``%`` is always encoded (``%25``), so an ASCII address that
    holds one cannot decode to another address, and non-ASCII ones fit a header (Latin-1
    on the wire)."""
    if len(_HEADER_EMAILS) >= _HEADER_EMAILS_MAX:
        _HEADER_EMAILS.clear()
    encoded = _HEADER_EMAILS[email] = quote(email, safe=EMAIL_AS_IS)
    return encoded


@bp.get("/auth/sign-in")
def sign_in() -> Response:
    """The proxy's answer for a refused check (see the module docstring): a redirect to
    ``/login?next=<X-Forwarded-Uri, encoded>`` for a browser, 204 with ``HX-Redirect``
    for htmx, the 401 JSON error for a program. The session is not checked again: the
    proxy's check has just refused it, and passes on why in ``X-Holdfast-Reason`` (what
    ``/auth/verify`` answered), so the sign-in page can say it ("An administrator signed
    you out."). A ``next`` that is not a local path and a reason Holdfast does not know
    are dropped."""
    reason = request.headers.get("X-Holdfast-Reason") or "signed_out"
    error = InvalidSession("Sign in to continue", reason=reason)
    return send_to_sign_in(error, safe_next(request.headers.get("X-Forwarded-Uri")))


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    """The public keys as a JWK Set (``kid``, ``alg`` ES256, ``use`` sig). Public data,
    so any origin may read it and anyone may cache it for HOLDFAST_JWKS_MAX_AGE seconds:
    a new key is published for longer than that before it signs (app.tokens)."""
    response = jsonify(services().keys.jwks())
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.cache_control.public = True
    response.cache_control.max_age = int(current_app.config["JWKS_MAX_AGE"])
    return response
