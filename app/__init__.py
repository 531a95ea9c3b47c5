"""Holdfast: a self-hosted session and device manager.

``create_app`` is a short list of named steps; everything the app holds for its lifetime
(database, clock, signing keys, hasher, mailer, the deployment settings the security
rules use) lives in ``app.extensions["holdfast"]`` as one :class:`Services` object.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from flask import Flask, Response, request
from flask.globals import request_ctx
from sqlalchemy.orm import Session
from werkzeug.datastructures import Headers

from app import config, logs
from app.cache import Cache, cache_from_url
from app.clock import FrozenClock, SystemClock
from app.core import alerts
from app.crypto import Hasher
from app.db import Database
from app.mail import Mailer, mailer_from_url
from app.tokens import KeyRing, load_verifying_keys

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


@dataclass
class Services:
    database: Database
    clock: SystemClock | FrozenClock
    keys: KeyRing
    hasher: Hasher
    mailer: Mailer
    #: what the security rules need to know (links in mail, GeoIP), see app.core.alerts
    deployment: alerts.Deployment
    #: answers fine a few minutes old (the admin charts): Redis when configured (app.cache)
    cache: Cache

    def session(self, *, write: bool = False) -> Session:
        db = self.database.session(write=write, mailer=self.mailer)
        alerts.configure(db, self.deployment)
        return db


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


class Holdfast(Flask):
    """Flask for a WSGI app without coroutines. Flask asks of every view and request hook,
    on every call, whether it is a coroutine function (ten times a request, 3 to 6 µs in
    all); Holdfast has none, and without the asgiref package (Flask's ``async`` extra)
    could not run one, so each is called as it is. :func:`refuse_coroutines` turns one
    into an error when the app is made, instead of a failing request."""

    response_class = HoldfastResponse

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        return func


def create_app(
    overrides: dict[str, Any] | None = None, *, instance_path: str | Path | None = None
) -> Flask:
    app = Holdfast(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=str(instance_path or ROOT / "instance"),
    )
    config.load(app, overrides)
    logs.init_app(app)
    trust_proxies(app)
    register_services(app)
    register_extensions(app)
    register_blueprints(app)
    register_request_hooks(app)
    register_error_handlers(app)
    register_cli(app)
    refuse_coroutines(app)
    return app


def refuse_coroutines(app: Flask) -> None:
    """Raise TypeError naming any coroutine function among the app's views and hooks (see
    :class:`Holdfast`)."""
    registries: list[Any] = [
        app.before_request_funcs,
        app.after_request_funcs,
        app.teardown_request_funcs,
        app.url_value_preprocessors,
        app.url_default_functions,
        app.template_context_processors,
    ]
    found: list[Any] = list(app.view_functions.values()) + app.teardown_appcontext_funcs
    for registry in registries:
        for hooks in registry.values():
            found.extend(hooks)
    for by_code in app.error_handler_spec.values():
        for handlers in by_code.values():
            found.extend(handlers.values())
    for func in found:
        if inspect.iscoroutinefunction(func):
            raise TypeError(f"{func!r}: Holdfast runs no coroutine views or hooks")


def trust_proxies(app: Flask) -> None:
    """Behind N reverse proxies (HOLDFAST_TRUSTED_PROXIES=N), take the client address and
    scheme from their X-Forwarded-* headers; with none, those headers are ignored (and
    the log warns once if requests nonetheless arrive through a proxy on this machine:
    app.logs)."""
    hops = int(app.config.get("TRUSTED_PROXIES") or 0)
    if hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_prefix=hops
        )


def register_services(app: Flask) -> None:
    database = Database(
        app.config["DATABASE_URL"], busy_timeout=float(app.config["SQLITE_BUSY_TIMEOUT"])
    )
    clock = app.config.get("CLOCK") or SystemClock()
    secret = app.config["SECRET_KEY"].encode()

    def load_keys() -> list:
        with database.session() as db:
            return load_verifying_keys(db, clock.now())

    app.extensions["holdfast"] = Services(
        database=database,
        clock=clock,
        keys=KeyRing(secret, app.config["BASE_URL"], load_keys),
        hasher=Hasher(secret),
        mailer=app.config.get("MAILER")
        or mailer_from_url(app.config["MAIL_URL"], app.config["MAIL_FROM"]),
        deployment=alerts.Deployment.from_config(
            base_url=app.config["BASE_URL"],
            product=app.config["PRODUCT_NAME"],
            geoip_db=app.config.get("GEOIP_DB"),
        ),
        cache=cache_from_url(app.config.get("REDIS_URL")),
    )


def register_extensions(app: Flask) -> None:
    from app.extensions import csrf, htmx, limiter, login_manager

    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config.get("REDIS_URL") or "memory://")
    # With Redis shared between nodes, a Redis outage must not fail sign-in: each node
    # counts in its own memory until Redis answers again (Flask-Limiter rechecks it).
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    # Flask-WTF's own before-request check looks up the view's exemptions before the
    # method; Holdfast's asks the method first (a GET, HEAD or OPTIONS has nothing to
    # check) and then runs the same protect() with the same exemptions. (So a
    # HOLDFAST_WTF_CSRF_CHECK_DEFAULT setting is ignored: the check is always on.)
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    csrf.init_app(app)

    @app.before_request
    def _csrf_protect() -> None:
        config = app.config
        if config["WTF_CSRF_ENABLED"] and request.method in config["WTF_CSRF_METHODS"]:
            csrf.protect(apply_exemptions=True)

    htmx.init_app(app)
    limiter.init_app(app)
    # Holdfast declares every limit on the view it guards (the code budgets in
    # app.web.auth), whose decorator checks it; it sets no default, application or meta
    # limits, which is all Flask-Limiter's own before-request check looks for. Unless an
    # operator configured some (HOLDFAST_RATELIMIT_*), the check is dropped, so that the
    # other requests (pages, /auth/verify) do not pay for one that can find nothing.
    # tests/test_web_auth.py and tests/test_api.py hold the limits.
    global_limits = ("RATELIMIT_DEFAULT", "RATELIMIT_APPLICATION", "RATELIMIT_META")
    hooks = app.before_request_funcs.get(None, [])
    configured = any(app.config.get(name) for name in global_limits)
    if not configured and limiter._check_request_limit in hooks:
        hooks.remove(limiter._check_request_limit)
        # Then only those views' decorators make Flask-Limiter's per-request state, and
        # its after-request hook (the X-RateLimit-* headers) and teardown hook run only
        # where they did, instead of making and resetting an empty one on every request.
        for registry in (app.after_request_funcs, app.teardown_request_funcs):
            registry[None] = [
                _where_limited(hook) if _owner(hook) is limiter else hook for hook in registry[None]
            ]
    login_manager.init_app(app)
    # Flask-Login's after-request hook refreshes its remember-me cookie, which Holdfast
    # never sets (it never calls login_user: the session token decides, app.web.context).
    # Left in, it would read Flask's cookie session on every request and make every
    # answer vary by Cookie.
    app.after_request_funcs[None].remove(login_manager._update_remember_cookie)


def _owner(hook: Callable[..., Any]) -> object:
    """The object a hook belongs to: a bound method's or a partial's first argument."""
    if isinstance(hook, partial):
        return hook.args[0] if hook.args else None
    return getattr(hook, "__self__", None)


def _where_limited(hook: Callable[[T], T]) -> Callable[[T], T]:
    """``hook``, run only for a request whose view checked a rate limit (Flask-Limiter
    keeps that request's state on the request context). tests/test_api.py checks that a
    limited view still gets its X-RateLimit-* headers."""

    def run(arg: T) -> T:
        if hasattr(request_ctx, "_limiter_request_context"):
            return hook(arg)
        return arg

    return run


def register_blueprints(app: Flask) -> None:
    from app.web import (
        admin,
        admin_alerts,
        admin_people,
        admin_policy,
        api,
        auth,
        compliance,
        devices,
        ops,
        proxy,
        security,
    )

    for blueprint in (
        auth.bp,
        devices.bp,
        api.bp,
        proxy.bp,
        admin.bp,
        admin_people.bp,
        admin_policy.bp,
        ops.bp,
        security.bp,
        admin_alerts.bp,
        compliance.bp,
    ):
        app.register_blueprint(blueprint)


def register_request_hooks(app: Flask) -> None:
    from app.web import context, ops, templating

    context.init_app(app)
    templating.init_app(app)
    ops.init_app(app)


def register_error_handlers(app: Flask) -> None:
    from app.web import errors

    errors.init_app(app)


def register_cli(app: Flask) -> None:
    from app.cli import register

    register(app)
