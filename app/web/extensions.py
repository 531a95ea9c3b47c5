"""Flask extensions, created unbound here and bound in the app factory."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect
from htmx_flask import Htmx


def client_ip(environ: dict[str, Any] | None = None) -> str:
    """The caller's address (of the current request, or of the WSGI ``environ`` given).
    Behind trusted proxies, create_app's trust_proxies step puts ProxyFix first, which
    rewrites REMOTE_ADDR from X-Forwarded-For."""
    return (request.environ if environ is None else environ).get("REMOTE_ADDR") or ""


def is_loopback(address: str) -> bool:
    """Whether ``address`` (a WSGI REMOTE_ADDR) is on the loopback interface."""
    return address == "::1" or address.startswith(("127.", "::ffff:127."))


login_manager = LoginManager()
# Flask-Login's session protection guards an identity kept in Flask's cookie session;
# Holdfast never keeps one there (app.web.principal: the session token decides, and IP or
# browser changes are the tenant's binding policy), so it is off.
login_manager.session_protection = None
csrf = CSRFProtect()
htmx = Htmx()
