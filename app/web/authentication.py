"""Who is asking: the request's live session, checked once per request on the hot path
(:func:`authenticate`, behind Flask-Login's ``current_user`` and ``/auth/verify``), and
the caller's address and user agent (:func:`origin`).

A request carries its session token as ``Authorization: Bearer`` (a program) or in the
``holdfast_session`` cookie (a browser); a refused token's cookie is cleared on the way
out.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Request, Response, g, request
from flask_login import current_user

from app.core.errors import HoldfastError, InvalidSession, SessionExpired
from app.core.events import Origin
from app.core.session_check import check_session
from app.core.sessions import Current
from app.db import scope_to_tenant
from app.internals import RequestGlobals, current_globals, request_ctx
from app.tokens import TokenError, TokenExpired
from app.web.cookies import SESSION_COOKIE, clear_session_cookie
from app.web.extensions import client_ip
from app.web.unit_of_work import now_of, services, unit_of

#: endpoints that check a session without it counting as activity (the page's own polling)
PASSIVE_ENDPOINTS = frozenset({"devices.status", "api.session_status", "admin.figures"})


def current() -> Current:
    """The live session of an authenticated request (use behind login_required)."""
    return current_user.current  # type: ignore[no-any-return]


def origin() -> Origin:
    """The caller's address and user agent."""
    return origin_of(request.environ)


def origin_of(environ: dict[str, Any]) -> Origin:
    """:func:`origin` from a WSGI environ."""
    return Origin(ip=client_ip(environ), user_agent=environ.get("HTTP_USER_AGENT", "")[:512])


def request_token(req: Request) -> str | None:
    if sends_bearer(req):
        return req.environ["HTTP_AUTHORIZATION"][7:].strip() or None
    return req.cookies.get(SESSION_COOKIE) or None


def sends_bearer(req: Request) -> bool:
    """Whether the request authenticates with ``Authorization: Bearer``: a program, which
    can follow no sign-in page (browsers send the cookie)."""
    return req.environ.get("HTTP_AUTHORIZATION", "")[:7].lower() == "bearer "


_UNCHECKED = object()


def authenticate() -> Current | None:
    """The request's live session, checked once per request (the hot path): None when the
    request carries no token or a refused one (then ``g.auth_error`` says why).

    Behind Flask-Login's ``current_user`` for every view; ``/auth/verify`` calls it
    directly, since it needs nothing else of Flask-Login. The check looks up Flask's
    context-locals (``g``, ``request``) once and passes them on: each lookup through the
    proxies costs about a microsecond, and it ran a dozen of them."""
    store = current_globals()
    checked = store.get("current", _UNCHECKED)
    if checked is _UNCHECKED:
        checked = store.current = _check(request_ctx.request, store)
    return checked  # type: ignore[no-any-return]


def _check(req: Request, store: RequestGlobals) -> Current | None:
    token = request_token(req)
    if token is None:
        return None
    found = services()
    moment = now_of(store, found)
    try:
        claims = found.keys.verify(token, moment)
    except TokenExpired:
        store.auth_error = SessionExpired(reason="lifetime_expired")
        return None
    except TokenError:
        store.auth_error = InvalidSession(reason="unknown")
        return None
    unit = unit_of(store, req.method, found)
    scope_to_tenant(unit, claims.tenant_id)
    if unit.write:
        # A request that will write is checked inside its own transaction (on SQLite under
        # the write lock, taken here): a revocation committed meanwhile either lands
        # before the check, which then refuses, or waits for this request to finish.
        unit().connection()
    try:
        return check_session(
            unit,
            claims,
            now=moment,
            touch=req.endpoint not in PASSIVE_ENDPOINTS,
            origin=origin_of(req.environ),
        )
    except HoldfastError as error:
        store.auth_error = error
        return None


def init_app(app: Flask) -> None:
    app.after_request(_forget_refused_token)


def _forget_refused_token(response: Response) -> Response:
    """A browser whose session cookie was refused is told to drop it."""
    if g.get("auth_error") is not None and request.cookies.get(SESSION_COOKIE):
        clear_session_cookie(response)
    return response
