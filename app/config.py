"""Configuration from ``HOLDFAST_*`` environment variables (Flask's ``from_prefixed_env``).

* HOLDFAST_DATABASE_URL: SQLAlchemy URL (default: SQLite file in the instance folder)
* HOLDFAST_SECRET_KEY: signs cookies and derives the keys guarding stored secrets
  (default: generated once into the instance folder; a short or placeholder key is refused)
* HOLDFAST_MAIL_URL: ``console``, ``smtp://host:port`` or ``smtps://host:port``
* HOLDFAST_MAIL_FROM: sender address
* HOLDFAST_BASE_URL: the public URL; the token issuer
* HOLDFAST_COOKIE_SECURE: Secure flag on cookies (default true; false under ``holdfast run``)
* HOLDFAST_REDIS_URL: rate-limit counters and the admin charts' cache in Redis (default:
  counters in the database, the cache in each process)
* HOLDFAST_RATELIMIT_CODES / HOLDFAST_RATELIMIT_CODES_PER_IP: code requests allowed per
  email address and per client network (an IPv4 address or an IPv6 /64)
* HOLDFAST_MAIL_TIMEOUT: seconds the mail relay may take for each step
* HOLDFAST_MAIL_SENDER: ``auto`` (web processes send mail unless a worker runs) or
  ``worker``
* HOLDFAST_TRUSTED_PROXIES: how many reverse proxies to trust for X-Forwarded-*
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask

#: placeholder secrets people copy from examples; refused like short ones
PLACEHOLDER_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "secret",
        "dev",
        "development",
        "your-secret-key",
        "replace-me",
        "please-change-me",
        "holdfast",
        "supersecret",
        "default",
    }
)
MIN_SECRET_BYTES = 32

DEFAULTS: dict[str, Any] = {
    "MAIL_URL": "console",
    "MAIL_FROM": "Holdfast <no-reply@localhost>",
    #: seconds the mail relay may take for each step (name lookup, connect, each command)
    "MAIL_TIMEOUT": 10,
    #: who sends queued mail: "auto" (each web process, unless a `holdfast worker` runs)
    #: or "worker" (only `holdfast worker`)
    "MAIL_SENDER": "auto",
    "BASE_URL": "http://127.0.0.1:5000",
    "COOKIE_SECURE": True,
    "REDIS_URL": None,
    "RATELIMIT_CODES": "5 per 10 minutes;20 per hour",
    "RATELIMIT_CODES_PER_IP": "30 per 10 minutes;200 per day",
    "PRODUCT_NAME": "Holdfast",
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "INFO",
    "METRICS_TOKEN": None,
    #: how long browsers, proxies and verifiers may cache the JWKS (its Cache-Control)
    "JWKS_MAX_AGE": 300,
    #: how often each process re-reads the signing keys from the database
    "KEY_RELOAD_SECONDS": 60,
    #: how long a SQLite write waits for the lock before the request answers 503
    "SQLITE_BUSY_TIMEOUT": 30,
    # Flask and extensions
    "SESSION_COOKIE_NAME": "holdfast_flow",
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the flow cookie
    "WTF_CSRF_SSL_STRICT": False,  # Referer checks break behind some proxies; Origin is checked
    "MAX_CONTENT_LENGTH": 64 * 1024,
}


class ConfigError(RuntimeError):
    """A setting that Holdfast refuses to start with."""


def load(app: Flask, overrides: dict[str, Any] | None) -> None:
    app.config.update(DEFAULTS)
    app.config.from_prefixed_env("HOLDFAST")
    if overrides:
        app.config.update(overrides)
    if not app.config.get("DATABASE_URL"):
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        app.config["DATABASE_URL"] = f"sqlite:///{Path(app.instance_path) / 'holdfast.db'}"
    app.config["SECRET_KEY"] = _secret_key(app)
    app.config["COOKIE_SECURE"] = _boolean(app.config["COOKIE_SECURE"])
    app.config["SESSION_COOKIE_SECURE"] = app.config["COOKIE_SECURE"]
    app.config["BASE_URL"] = str(app.config["BASE_URL"]).rstrip("/")


def _secret_key(app: Flask) -> str:
    supplied = app.config.get("SECRET_KEY")
    if supplied:
        supplied = str(supplied)
        if (
            supplied.strip().lower() in PLACEHOLDER_SECRETS
            or len(supplied.encode()) < MIN_SECRET_BYTES
        ):
            raise ConfigError(
                f"HOLDFAST_SECRET_KEY must be at least {MIN_SECRET_BYTES} bytes of random data "
                "(try: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return supplied
    path = Path(app.instance_path) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _boolean(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off", "")
    return bool(value)
