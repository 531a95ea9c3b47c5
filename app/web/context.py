"""What every request shares: its database session and clock reading, the hot-path
session check behind Flask-Login, the session cookie, one commit at the end, and the
security headers.

One transaction per request: views and the core only flush; :func:`_finish` commits once
after the view returned (a :class:`HoldfastError` answer commits too, see app.core), and
an unexpected error rolls back. A commit that fails answers 503, never a success. A
request that opened no transaction (a validation that wrote nothing) has nothing to commit.
The one write outside it: a read-only request's throttled touch of its session is one
autocommit statement, kept even if the view then fails (the activity happened; see
app.db.rows_changed).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Request, Response, current_app, g, redirect, request, url_for
from flask.ctx import _AppCtxGlobals
from flask.globals import request_ctx
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from flask_login import UserMixin, current_user
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.core import sessions
from app.core.errors import HoldfastError, InvalidSession, SessionExpired
from app.core.events import Origin
from app.core.session_check import check_session
from app.core.sessions import END_MESSAGES, Current
from app.db import SessionOnDemand, scope_to_tenant
from app.models import User
from app.sealing import Unsealable
from app.services import Services
from app.tokens import TokenError, TokenExpired
from app.web.extensions import client_ip, login_manager

log = logging.getLogger(__name__)

SESSION_COOKIE = "holdfast_session"
DEVICE_COOKIE = "holdfast_device"
DEVICE_COOKIE_AGE = 400 * 86400  # the most browsers keep a cookie
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: endpoints that check a session without it counting as activity (the page's own polling)
PASSIVE_ENDPOINTS = frozenset({"devices.status", "api.session_status", "admin.figures"})

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

#: (name, lower-case name, value) added to every response that does not set its own
SECURITY_HEADERS = tuple(
    (name, name.lower(), value)
    for name, value in (
        ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "same-origin"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
    )
)


class Principal(UserMixin):
    """Flask-Login's ``current_user``: the person behind the request's live session."""

    def __init__(self, current: Current) -> None:
        self.current = current

    @property
    def user(self) -> User:
        return self.current.user  # loaded on first use (see Current)

    def get_id(self) -> str:
        return self.current.facts.user.id

    # What every page's header shows, from the checked row: no ORM load for it.
    @property
    def email(self) -> str:
        return self.current.facts.user.email

    @property
    def role(self) -> str:
        return self.current.facts.user.role

    @property
    def is_active(self) -> bool:
        return not self.current.facts.user.disabled

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current.user, name)


def services() -> Services:
    return current_app.extensions["holdfast"]


def db() -> Session:
    """The request's database session (made on first use)."""
    return _unit(g._get_current_object(), request.method)()


def _unit(store: _AppCtxGlobals, method: str, found: Services | None = None) -> SessionOnDemand:
    """The request's database session, made when something first needs it: the hot path
    reads and touches without one (app.db.SessionOnDemand)."""
    unit: SessionOnDemand | None = store.get("db")
    if unit is None:
        found = found or services()
        write = method not in SAFE_METHODS
        unit = store.db = SessionOnDemand(found.database, write=write, make=found.session)
    return unit


def now() -> datetime:
    """The request's moment: read once, so every rule in a request agrees."""
    return _now(g._get_current_object())


def _now(store: _AppCtxGlobals, found: Services | None = None) -> datetime:
    moment: datetime | None = store.get("now")
    if moment is None:
        moment = store.now = (found or services()).clock.now()
    return moment


def origin() -> Origin:
    """The caller's address and user agent."""
    return _origin(request.environ)


def _origin(environ: dict[str, Any]) -> Origin:
    return Origin(ip=client_ip(environ), user_agent=environ.get("HTTP_USER_AGENT", "")[:512])


def current() -> Current:
    """The live session of an authenticated request (use behind login_required)."""
    return current_user.current  # type: ignore[no-any-return]


def iso(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC to the second (``2026-03-02T09:00:00Z``), as every answer gives times."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def seconds_until(moment: datetime) -> int:
    return max(0, int((moment - now()).total_seconds()))


def live_status(me: Current) -> dict[str, Any]:
    """What a status check answers for a live session: the API's (``GET
    /api/auth/session``) and the page's own polling (``GET /session/status``)."""
    return {
        "valid": True,
        "sessionId": me.facts.session.id,
        "expiresAt": iso(me.expires_at),
        "expiresIn": seconds_until(me.expires_at),
        "deviceCount": sessions.device_count(db(), me.facts.user.id, now()),
    }


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
    store = g._get_current_object()
    checked = store.get("current", _UNCHECKED)
    if checked is _UNCHECKED:
        checked = store.current = _check(request_ctx.request, store)
    return checked  # type: ignore[no-any-return]


def _check(req: Request, store: _AppCtxGlobals) -> Current | None:
    token = request_token(req)
    if token is None:
        return None
    found = services()
    moment = _now(store, found)
    try:
        claims = found.keys.verify(token, moment)
    except TokenExpired:
        store.auth_error = SessionExpired(reason="lifetime_expired")
        return None
    except TokenError:
        store.auth_error = InvalidSession(reason="unknown")
        return None
    unit = _unit(store, req.method, found)
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
            origin=_origin(req.environ),
        )
    except HoldfastError as error:
        store.auth_error = error
        return None


@login_manager.request_loader
def _load_principal(_req: Request) -> Principal | None:
    checked = authenticate()
    return None if checked is None else Principal(checked)


@login_manager.user_loader
def _never_from_flask_session(_user_id: str) -> None:
    """Holdfast never keeps the person in Flask's cookie session; the token decides."""
    return None


@login_manager.unauthorized_handler
def _unauthorized() -> Response:
    error = g.get("auth_error") or InvalidSession("Sign in to continue", reason="signed_out")
    come_back_to = request.full_path.rstrip("?") if request.method == "GET" else None
    return send_to_sign_in(error, come_back_to)


def send_to_sign_in(error: HoldfastError, come_back_to: str | None) -> Response:
    """The answer to a request that needs a live session and has none (``error`` says
    why): a program (a bearer token, or a request for JSON) gets the JSON error with 401
    and ``WWW-Authenticate``, since it cannot follow a sign-in page; htmx gets 204 with
    ``HX-Redirect``; a browser is redirected to the sign-in page, with ``next`` (a local
    path, URL-encoded) to come back to ``come_back_to`` afterwards. Also what
    ``GET /auth/sign-in`` answers for a reverse proxy (app.web.proxy)."""
    from app.web.errors import json_error, wants_json

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


def set_session_cookie(response: Response, token: str, expires_at: datetime) -> None:
    """HttpOnly, SameSite=Lax, Secure unless configured off; never past the absolute
    deadline (the token's ``exp``)."""
    max_age = max(0, int((expires_at - now()).total_seconds()))
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=current_app.config["COOKIE_SECURE"],
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=current_app.config["COOKIE_SECURE"],
    )


def set_device_cookie(response: Response, value: str) -> None:
    response.set_cookie(
        DEVICE_COOKIE,
        value,
        max_age=DEVICE_COOKIE_AGE,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=current_app.config["COOKIE_SECURE"],
    )


class FlowCookie(SecureCookieSessionInterface):
    """Flask's signed cookie session (``holdfast_flow``: the sign-in flow, CSRF tokens,
    flashed messages), doing no work for a request that neither carries nor changes one:
    most requests (API calls, ``/auth/verify``, polling) never touch it. Without a Cookie
    header there is not even werkzeug's cookie parsing, which scans the whole WSGI
    environ for the header (≈ 5 µs). Flask would build
    its signing serializer on every request and look up seven cookie settings on the way
    out; here the serializer is made once per secret key (and fallbacks)."""

    def __init__(self) -> None:
        self._signer: tuple[tuple[Any, ...], URLSafeTimedSerializer | None] = ((), None)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ()))
        made_for, serializer = self._signer
        if made_for != keys:
            serializer = super().get_signing_serializer(app)
            self._signer = (keys, serializer)
        return serializer

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and (
            "HTTP_COOKIE" not in request.environ
            or not request.cookies.get(self.get_cookie_name(app))
        ):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if session or session.modified or session.accessed:
            super().save_session(app, session, response)
        # else: nothing to store, nothing to remove, and the answer did not vary by it


def init_app(app: Flask) -> None:
    app.session_interface = FlowCookie()
    app.after_request(_finish)
    app.teardown_request(_close)


def _finish(response: Response) -> Response:
    session = _made()
    if session is not None and session.in_transaction() and not g.get("rollback"):
        try:
            session.commit()
        except SQLAlchemyError:
            log.exception("commit failed")
            # Detach what the request read before rolling back: a rollback expires it, and
            # the access log reading the session's id afterwards would then try the dead
            # connection again and turn this 503 into a 500 (tests/test_pg_restart.py).
            session.expunge_all()
            session.rollback()
            from app.web.errors import unavailable

            response = unavailable()
        except Unsealable as error:  # a pseudonym key sealed with a key that is gone
            session.expunge_all()
            session.rollback()
            from app.web.errors import secrets_unavailable

            response = secrets_unavailable(error)
    if g.get("auth_error") is not None and request.cookies.get(SESSION_COOKIE):
        clear_session_cookie(response)
    _secure_headers(response)
    return response


def _close(_error: BaseException | None) -> None:
    unit: SessionOnDemand | None = g.pop("db", None)
    session = None if unit is None else unit.made
    if session is not None and (session.in_transaction() or session.identity_map):
        session.close()  # one that never read or wrote holds nothing to release


def _made() -> Session | None:
    """The request's database session, if something made it."""
    unit: SessionOnDemand | None = g.get("db")
    return None if unit is None else unit.made


def _secure_headers(response: Response) -> None:
    """Add each of :data:`SECURITY_HEADERS` a view did not set itself (one pass over the
    response's headers, however many there are)."""
    headers = response.headers
    present = {key.lower() for key, _value in headers}
    for name, lowered, value in SECURITY_HEADERS:
        if lowered not in present:
            headers.add(name, value)
    if request.endpoint != "static":
        # Pages carry personal data and CSRF tokens: never cache them anywhere. A view
        # that serves public data says so itself (the JWKS: "public, max-age=…").
        if "cache-control" not in present:
            headers.add("Cache-Control", "no-store")
        elif not response.cache_control.public:
            headers["Cache-Control"] = "no-store"
    if current_app.config["COOKIE_SECURE"] and "strict-transport-security" not in present:
        headers.add("Strict-Transport-Security", "max-age=31536000")
