"""Holdfast's cookies: the session token's (``holdfast_session``), the device's
(``holdfast_device``), and Flask's signed cookie session (``holdfast_flow``: the sign-in
flow, CSRF tokens, flashed messages), which most requests never open."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Flask, Request, Response, current_app
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from itsdangerous import URLSafeTimedSerializer

from app.web.unit_of_work import now

SESSION_COOKIE = "holdfast_session"
DEVICE_COOKIE = "holdfast_device"
DEVICE_COOKIE_AGE = 400 * 86400  # the most browsers keep a cookie


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
