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

from flask import Flask, request

from app import config, internals, logs, paths, signals, version
from app.cache import cache_from_url
from app.clock import SystemClock
from app.core import backchannel, events, webhooks
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


class Holdfast(Flask):
    """Flask for a WSGI app without coroutines. Flask asks of every view and request hook,
    on every call, whether it is a coroutine function (ten times a request, 3 to 6 µs in
    all); Holdfast has none, and without the asgiref package (Flask's ``async`` extra)
    could not run one, so each is called as it is. :func:`refuse_coroutines` turns one
    into an error when the app is made, instead of a failing request. Its answers are
    app.internals.HoldfastResponse (Flask's own where werkzeug lacks what that relies on)."""

    response_class = internals.RESPONSE_CLASS

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
    internals.report_missing(app.logger)
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
    # Apps signed in through a session that ended are signed out (back-channel logout).
    signals.events_sealed.connect(backchannel.apps_signed_out, sender=database)


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
    from app.web import i18n
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
    i18n.init_app(app)
    login_manager.init_app(app)
    # Holdfast never sets Flask-Login's remember-me cookie (it never calls login_user: the
    # session token decides, app.web.principal): no need to refresh it on every request.
    internals.drop_remember_cookie_refresh(app, login_manager)


def register_blueprints(app: Flask) -> None:
    from app.web import (
        admin,
        admin_alerts,
        admin_apps,
        admin_people,
        admin_policy,
        api,
        api_apps,
        auth,
        compliance,
        devices,
        oidc,
        ops,
        passkeys,
        proxy,
        security,
        session_apps,
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
        oidc.bp,
        session_apps.bp,
        admin_apps.bp,
        passkeys.bp,
        passkeys.api_bp,
        api_apps.bp,
        sign_in_links.bp,
    ):
        app.register_blueprint(blueprint)


def register_request_hooks(app: Flask) -> None:
    from app.web import (
        authentication,
        cookies,
        ops,
        principal,
        security_headers,
        templating,
        unit_of_work,
    )

    cookies.init_app(app)
    principal.init_app(app)
    # After-request hooks run in the reverse order of these lines: the commit first (a
    # failed one turns the answer into a 503), then a refused token's cookie is cleared,
    # then the security headers go on whatever the answer became.
    security_headers.init_app(app)
    authentication.init_app(app)
    unit_of_work.init_app(app)
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
