"""Flask extensions, created unbound here and bound in the app factory."""

from __future__ import annotations

from flask import request
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect
from htmx_flask import Htmx


def client_ip() -> str:
    """The caller's address. Behind a proxy, wsgi.py applies ProxyFix first."""
    return request.remote_addr or ""


login_manager = LoginManager()
csrf = CSRFProtect()
htmx = Htmx()
limiter = Limiter(key_func=client_ip, headers_enabled=True)
