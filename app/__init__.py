"""Holdfast: a self-hosted session and device manager.

``create_app`` is a short list of named steps; everything the app holds for its lifetime
(database, clock, signing keys, hasher, mailer, the deployment settings the security
rules use) lives in ``app.extensions["holdfast"]`` as one :class:`Services` object.
``__version__`` is this release's version (pyproject.toml's).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from werkzeug.datastructures import Headers

from app import config, logs, paths, signals, version
from app.cache import cache_from_url
from app.clock import SystemClock
from app.core import events, webhooks
from app.core.budgets import CodeBudgets
from app.core.deployment import Deployment
from app.crypto import Hasher
from app.db import Database
from app.mail import mailer_from_url
from app.outbox import BackgroundSender, Outbox
from app.ratelimit import counters_from_url
from app.services import Services
from app.tokens import KeyRing, load_verifying_keys

__version__ = version.__version__


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
        template_folder=str(paths.TEMPLATES),
        static_folder=str(paths.STATIC),
        instance_path=str(instance_path or paths.data_dir()),
    )
    config.load(app, overrides)
    logs.init_app(app)
    trust_proxies(app)
    register_services(app)
    register_mail_sender(app)
    register_extensions(app)
    register_blueprints(app)
    register_request_hooks(app)
    register_error_handlers(app)
    register_cli(app)
    register_static_files(app)
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
        app.config["DATABASE_URL"],
        busy_timeout=float(app.config["SQLITE_BUSY_TIMEOUT"]),
        pool_size=int(app.config["DATABASE_POOL_SIZE"]),
    )
    register_audit_hooks(database)
    clock = app.config.get("CLOCK") or SystemClock()
    secret = app.config["SECRET_KEY"].encode()
    hasher = Hasher(secret, [key.encode() for key in app.config["SECRET_KEY_FALLBACKS"]])

    def load_keys() -> list:
        with database.session() as db:
            return load_verifying_keys(db, clock.now())

    mailer = app.config.get("MAILER") or mailer_from_url(
        app.config["MAIL_URL"], app.config["MAIL_FROM"], timeout=float(app.config["MAIL_TIMEOUT"])
    )
    app.extensions["holdfast"] = Services(
        database=database,
        clock=clock,
        keys=KeyRing(
            hasher.sealer,
            app.config["BASE_URL"],
            load_keys,
            refresh_seconds=float(app.config["KEY_RELOAD_SECONDS"]),
        ),
        hasher=hasher,
        sealer=hasher.sealer,
        mailer=mailer,
        outbox=Outbox(hasher.sealer, mailer.sender),
        deployment=Deployment.from_config(
            base_url=app.config["BASE_URL"],
            product=app.config["PRODUCT_NAME"],
            geoip_db=app.config.get("GEOIP_DB"),
        ),
        cache=cache_from_url(app.config.get("REDIS_URL")),
        budgets=code_budgets(app),
    )


def code_budgets(app: Flask) -> CodeBudgets:
    """HOLDFAST_RATELIMIT_CODES and _PER_IP, counted where every node sees them."""
    try:
        return CodeBudgets.from_config(app.config, counters_from_url(app.config.get("REDIS_URL")))
    except ValueError as error:
        raise config.ConfigError(str(error)) from error


def register_audit_hooks(database: Database) -> None:
    """Every session ``database`` makes seals its audit events into their chains when it
    commits (app.core.events), and the sealed events queue their webhook deliveries in
    the same transaction (app.core.webhooks listens for them)."""
    database.listen("before_commit", events.before_commit)
    database.listen("after_rollback", events.after_rollback)
    signals.events_sealed.connect(webhooks.queue_deliveries, sender=database)


def register_mail_sender(app: Flask) -> None:
    """Mail queued by this process's requests is sent by a thread of its own
    (app.outbox.BackgroundSender), started by the first request: never in a gunicorn
    master or a CLI command, which serve none. HOLDFAST_MAIL_SENDER=worker leaves all
    sending to ``holdfast worker``."""
    services: Services = app.extensions["holdfast"]
    if str(app.config["MAIL_SENDER"]).lower() == "worker":
        return
    sender = services.sender = BackgroundSender(services)
    services.outbox.listeners.append(sender.wake)

    @app.before_request
    def _start_sender() -> None:
        if not sender.running:
            sender.start()


def register_extensions(app: Flask) -> None:
    from app.web.extensions import csrf, htmx, login_manager

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
    login_manager.init_app(app)
    # Flask-Login's after-request hook refreshes its remember-me cookie, which Holdfast
    # never sets (it never calls login_user: the session token decides, app.web.context).
    # Left in, it would read Flask's cookie session on every request and make every
    # answer vary by Cookie.
    app.after_request_funcs[None].remove(login_manager._update_remember_cookie)


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
        passkeys,
        proxy,
        security,
        sign_in_links,
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
        *(passkeys.bp, passkeys.api_bp, sign_in_links.bp),
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


def register_static_files(app: Flask) -> None:
    """static/ served in front of the app, fingerprinted, compressed (app.web.assets)."""
    from app.web import assets

    assets.init_app(app)


def register_cli(app: Flask) -> None:
    from app.cli import register

    register(app)
