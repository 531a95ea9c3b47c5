"""Every use Holdfast makes of a library's private names or undocumented workings, in one
place: each is checked when the module loads, and when one is gone (a newer release
renamed it) Holdfast falls back to the library's plain behaviour, slower but the same
answers; :func:`report_missing` (called by ``create_app``) logs a warning naming it.

=============  ===========================================  ==================================
Library        Name                                         Without it
=============  ===========================================  ==================================
Flask          ``flask.globals.request_ctx`` (the hot path  the ``flask.request`` proxy
               reads the request through it, app.web.
               authentication)
Werkzeug       ``LocalProxy._get_current_object`` on        the ``g`` / ``current_app``
               ``flask.g`` (:func:`current_globals`: the    proxies themselves
               hot path, app.logs) and ``flask.current_app``
               (:func:`current_application`: ``holdfast
               serve``)
Flask-Login    ``LoginManager._update_remember_cookie``,    the hook stays: it reads Flask's
               an after-request hook that                   cookie session on every request
               :func:`drop_remember_cookie_refresh`         (and answers vary by Cookie)
               removes
Werkzeug       ``Response.get_wsgi_headers``, overridden    ``flask.Response``
               by :class:`HoldfastResponse` (relies on
               what werkzeug corrects there)
SQLAlchemy     ``SQLiteCompiler.get_from_hint_text``,       SQLite's own compiler: index hints
               overridden by :class:`SQLiteCompilerWith     left out (app.db.PlainQuery's
               Hints`                                       statements still run, unguided)
smtplib        ``SMTP._get_socket``, overridden by          smtplib's own clients: the relay's
               :func:`smtp_clients` to look the relay's     name is looked up without the
               name up within the timeout (app.mail)        connection timeout
Flask          ``flask.ctx._AppCtxGlobals``, the type of    ``object`` (annotations only)
               ``g`` (:data:`RequestGlobals`)
gunicorn       gthread's internals (``ThreadWorker``'s      plain gthread (the worker checks
               ``enqueue_req``, ``finish_request``,         and logs it itself, at start-up)
               ``_cap_keepalive``, ``pending_conns``,
               ``method_queue``, ``TConn.data_ready``...):
               deploy/gunicorn_worker.py
               ``GTHREAD_INTERNALS``
=============  ===========================================  ==================================

deploy/gunicorn_worker.py keeps its own list and check: it imports nothing of Holdfast, so
that the benchmarks' Django peer runs under it too.

This module imports nothing of Holdfast, so every layer may import it (the one exception
to the layers' rules, tools/import_contract.py). ``make test-newest`` runs the tests of
these fallbacks against the newest releases of the libraries.
"""

from __future__ import annotations

import logging
import smtplib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import flask.ctx
import flask.globals
from flask import Flask, Request, Response, current_app, g
from flask_login import LoginManager
from sqlalchemy.dialects.sqlite.base import SQLiteCompiler
from werkzeug.datastructures import Headers
from werkzeug.wrappers import Response as WerkzeugResponse


@dataclass(frozen=True)
class Internal:
    """One private name Holdfast uses: ``attribute`` of ``owner``."""

    library: str
    #: how the owner is written in Python (a proxy cannot say its own name outside a request)
    where: str
    owner: Any
    attribute: str
    without: str

    @property
    def name(self) -> str:
        return f"{self.library}'s {self.where}.{self.attribute}"

    @property
    def present(self) -> bool:
        return hasattr(self.owner, self.attribute)


INTERNALS = (
    Internal("Flask", "flask.globals", flask.globals, "request_ctx", "the flask.request proxy"),
    Internal("Werkzeug", "flask.g", g, "_get_current_object", "the flask.g proxy"),
    Internal("Flask", "flask.ctx", flask.ctx, "_AppCtxGlobals", "object (annotations only)"),
    Internal(
        "Werkzeug",
        "flask.current_app",
        current_app,
        "_get_current_object",
        "the flask.current_app proxy",
    ),
    Internal(
        "Flask-Login",
        "flask_login.LoginManager",
        LoginManager,
        "_update_remember_cookie",
        "Flask-Login's remember-me hook stays on every request",
    ),
    Internal(
        "Werkzeug",
        "werkzeug.wrappers.Response",
        WerkzeugResponse,
        "get_wsgi_headers",
        "flask.Response",
    ),
    Internal(
        "SQLAlchemy",
        "sqlalchemy.dialects.sqlite.base.SQLiteCompiler",
        SQLiteCompiler,
        "get_from_hint_text",
        "SQLite's own compiler (index hints left out)",
    ),
    Internal(
        "smtplib",
        "smtplib.SMTP",
        smtplib.SMTP,
        "_get_socket",
        "smtplib's own clients (the relay's name looked up without the timeout)",
    ),
)


def missing() -> list[Internal]:
    """The internals of :data:`INTERNALS` this process's libraries lack."""
    return [internal for internal in INTERNALS if not internal.present]


def report_missing(log: logging.Logger) -> list[Internal]:
    """Log a warning for each missing internal, naming it and what Holdfast does instead;
    returns them."""
    gone = missing()
    for internal in gone:
        log.warning(
            "library internal %s is gone; using the plain behaviour: %s",
            internal.name,
            internal.without,
        )
    return gone


# --- Flask and Werkzeug's context-locals ---------------------------------------------------

if TYPE_CHECKING:
    from flask.ctx import _AppCtxGlobals as RequestGlobals
else:
    #: the type of ``flask.g`` (for annotations; Flask names it privately)
    RequestGlobals = getattr(flask.ctx, "_AppCtxGlobals", object)


class _HasRequest(Protocol):
    @property
    def request(self) -> Request: ...


class _PlainRequestContext:
    """What the hot path reads ``request_ctx.request`` from when Flask has no
    ``request_ctx``: the ``request`` proxy (each attribute through the proxy)."""

    @property
    def request(self) -> Request:
        return flask.request


def _request_ctx() -> _HasRequest:
    found: _HasRequest | None = getattr(flask.globals, "request_ctx", None)
    return _PlainRequestContext() if found is None else found


#: Flask's request context, whose ``.request`` is the request object itself: one lookup
#: through a context-local instead of one per attribute read through the proxy.
request_ctx: _HasRequest = _request_ctx()


def _plain_globals() -> RequestGlobals:
    return g


#: The request's ``g`` object itself (not the proxy, whose every attribute access is a
#: context-local lookup, about a microsecond): for code that reads it several times.
current_globals: Callable[[], RequestGlobals] = (
    getattr(g, "_get_current_object", None) or _plain_globals
)


def current_application() -> Flask:
    """The app itself, not the ``current_app`` proxy (what a command hands to code that
    keeps it)."""
    real: Callable[[], Flask] | None = getattr(current_app, "_get_current_object", None)
    return current_app if real is None else real()


# --- Flask-Login -----------------------------------------------------------------------------


def drop_remember_cookie_refresh(app: Flask, manager: LoginManager) -> bool:
    """Remove Flask-Login's after-request hook that refreshes its remember-me cookie
    (Holdfast never sets one: the session token decides). Left in, it reads Flask's
    cookie session on every request and makes every answer vary by Cookie. Returns
    whether it was found (and removed)."""
    hook = getattr(manager, "_update_remember_cookie", None)
    hooks = app.after_request_funcs.get(None, [])
    if hook is None or hook not in hooks:
        return False
    hooks.remove(hook)
    return True


# --- Werkzeug's response headers -------------------------------------------------------------


class HoldfastResponse(Response):
    """Flask's response, sent without werkzeug's second pass over its headers. Werkzeug
    copies every response's headers on the way out (``get_wsgi_headers``), checking each
    value again for line breaks, so that it can correct Location and Content-Length in
    the copy; each header was checked when it was set. When there is nothing to correct
    (no Location or Content-Location, no 1xx/204/304 status, a length known or not
    wanted) the headers go out as they are: 15 to 20 of them a response, about 6 µs.
    A view may still return ``flask.Response``: Flask makes it this class on the way out
    (``force_type``). tests/test_ops.py checks the wire headers match werkzeug's."""

    def get_wsgi_headers(self, environ: dict[str, Any]) -> Headers:
        status = self.status_code
        if status < 200 or status in (204, 304):
            return super().get_wsgi_headers(environ)
        headers = self.headers
        length = False
        for key, _value in headers:
            lowered = key.lower()
            if lowered == "content-length":
                length = True
            elif lowered in ("location", "content-location"):
                return super().get_wsgi_headers(environ)
        if not length and self.automatically_set_content_length and self.is_sequence:
            return super().get_wsgi_headers(environ)
        return headers


def response_class(werkzeug_response: type = WerkzeugResponse) -> type[Response]:
    """:class:`HoldfastResponse`, or Flask's own when ``werkzeug_response`` no longer has
    the method it overrides."""
    return HoldfastResponse if hasattr(werkzeug_response, "get_wsgi_headers") else Response


#: The app's response class (:func:`response_class`).
RESPONSE_CLASS = response_class()


# --- SQLAlchemy's SQLite compiler ------------------------------------------------------------


class SQLiteCompilerWithHints(SQLiteCompiler):
    """SQLite's compiler, writing the statement's SQLite index hints (see
    app.db.PlainQuery): ``INDEXED BY`` and ``NOT INDEXED`` only, so a hint meant for every
    database (a ``with_hint`` without a dialect name) never reaches SQLite as SQL."""

    def get_from_hint_text(self, table: Any, text: str | None) -> str | None:
        if text and text.startswith(("INDEXED BY ", "NOT INDEXED")):
            return text
        return None


def sqlite_compiler(plain: type[SQLiteCompiler] = SQLiteCompiler) -> type[SQLiteCompiler]:
    """:class:`SQLiteCompilerWithHints`, or ``plain`` (SQLite's own compiler, which leaves
    hints out) when it no longer has the method that one overrides."""
    return SQLiteCompilerWithHints if hasattr(plain, "get_from_hint_text") else plain


#: What compiles app.db's plain statements for SQLite (:func:`sqlite_compiler`).
SQLITE_COMPILER = sqlite_compiler()


# --- smtplib ---------------------------------------------------------------------------------

#: ``resolve(host, port, timeout=...)``: the address to connect to (app.mail.resolve)
Resolver = Callable[..., str]


def smtp_clients(resolve: Resolver) -> tuple[type[smtplib.SMTP], type[smtplib.SMTP_SSL]]:
    """smtplib's two clients, looking the relay's name up with ``resolve`` (within the
    connection timeout) before connecting to the address found. They replace
    ``_get_socket``, smtplib's one place that opens the socket (the same method in every
    Python since 3.3); TLS still checks the certificate against the name. Without that
    method: smtplib's own clients."""
    if not hasattr(smtplib.SMTP, "_get_socket"):
        return smtplib.SMTP, smtplib.SMTP_SSL

    class SMTP(smtplib.SMTP):
        def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
            address = resolve(host, port, timeout=timeout)
            # typeshed declares none of smtplib's private methods
            return super()._get_socket(address, port, timeout)  # type: ignore[misc]

    class SMTPS(smtplib.SMTP_SSL):
        def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
            address = resolve(host, port, timeout=timeout)
            # typeshed declares none of smtplib's private methods
            return super()._get_socket(address, port, timeout)  # type: ignore[misc]

    return SMTP, SMTPS
