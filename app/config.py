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
* HOLDFAST_RATELIMIT_CHECKS / HOLDFAST_RATELIMIT_CHECKS_PER_IP: code checks (emailed,
  app or recovery codes) allowed per address and per client network
* HOLDFAST_MAIL_TIMEOUT: seconds the mail relay may take for each step
* HOLDFAST_MAIL_SENDER: ``auto`` (web processes send mail unless a worker runs) or
  ``worker``
* HOLDFAST_TRUSTED_PROXIES: how many reverse proxies to trust for X-Forwarded-*
* HOLDFAST_SECRET_KEY_FALLBACKS: earlier secret keys still accepted (see
  :func:`secret_key_fallbacks`)

Every secret setting (:data:`SECRET_SETTINGS`) can instead be read from a file,
``HOLDFAST_<NAME>_FILE`` (see :func:`read_secret_files`), and a ``.env`` file is read when
present (see :func:`read_env_file`).
"""

from __future__ import annotations

import json
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
    #: code checks (emailed, app or recovery codes) per address and per client network
    "RATELIMIT_CHECKS": "25 per 10 minutes;150 per day",
    "RATELIMIT_CHECKS_PER_IP": "100 per 10 minutes;1000 per day",
    "PRODUCT_NAME": "Holdfast",
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "INFO",
    "METRICS_TOKEN": None,
    #: how long browsers, proxies and verifiers may cache the JWKS (its Cache-Control)
    "JWKS_MAX_AGE": 300,
    #: how often each process re-reads the signing keys from the database
    "KEY_RELOAD_SECONDS": 60,
    #: database connections each process keeps open (and as many more for a burst)
    "DATABASE_POOL_SIZE": 10,
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


#: settings that hold secrets: each can be given as a file instead (HOLDFAST_<NAME>_FILE)
SECRET_SETTINGS = (
    "SECRET_KEY",
    "SECRET_KEY_FALLBACKS",
    "DATABASE_URL",
    "MAIL_URL",
    "REDIS_URL",
    "METRICS_TOKEN",
)
ENV_PREFIX = "HOLDFAST_"


class ConfigError(RuntimeError):
    """A setting that Holdfast refuses to start with."""


def load(app: Flask, overrides: dict[str, Any] | None) -> None:
    app.config.update(DEFAULTS)
    from_env_file = read_env_file(app)
    app.config.from_prefixed_env("HOLDFAST")
    if overrides:
        app.config.update(overrides)
    read_secret_files(
        app,
        supplied={
            name.removeprefix(ENV_PREFIX) for name in os.environ if name.startswith(ENV_PREFIX)
        }
        | from_env_file
        | set(overrides or ()),
    )
    if not app.config.get("DATABASE_URL"):
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        app.config["DATABASE_URL"] = f"sqlite:///{Path(app.instance_path) / 'holdfast.db'}"
    app.config["SECRET_KEY"] = _secret_key(app)
    fallbacks = secret_key_fallbacks(app)
    app.config["SECRET_KEY_FALLBACKS"] = fallbacks
    if fallbacks:
        # Flask signs the flow cookie with SECRET_KEY and accepts SECRET_KEY_FALLBACKS;
        # Flask-WTF's form tokens take a list the same way (itsdangerous: the last signs).
        app.config.setdefault("WTF_CSRF_SECRET_KEY", [*fallbacks, app.config["SECRET_KEY"]])
    app.config["COOKIE_SECURE"] = _boolean(app.config["COOKIE_SECURE"])
    app.config["SESSION_COOKIE_SECURE"] = app.config["COOKIE_SECURE"]
    app.config["BASE_URL"] = str(app.config["BASE_URL"]).rstrip("/")


def _secret_key(app: Flask) -> str:
    supplied = app.config.get("SECRET_KEY")
    if supplied:
        supplied = str(supplied)
        _refuse_weak(supplied, "HOLDFAST_SECRET_KEY")
        return supplied
    path = Path(app.instance_path) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _refuse_weak(key: str, setting: str) -> None:
    if key.strip().lower() in PLACEHOLDER_SECRETS or len(key.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{setting} must be at least {MIN_SECRET_BYTES} bytes of random data "
            "(try: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )


def secret_key_fallbacks(app: Flask) -> list[str]:
    """The earlier secret keys still accepted, from HOLDFAST_SECRET_KEY_FALLBACKS: keys
    separated by commas or whitespace (newlines too, so a ``_FILE`` may hold one a
    line), or a JSON list. What was sealed, signed or hashed under one of them still
    opens or matches (app.sealing, app.crypto, the flow cookie and form tokens); new
    things use HOLDFAST_SECRET_KEY only. Each is checked like the secret key; the current
    key and repeats are dropped. Raises ConfigError."""
    value = app.config.get("SECRET_KEY_FALLBACKS")
    if value is None or value == "":
        return []
    if isinstance(value, str):
        keys = value.replace(",", " ").split()
    elif isinstance(value, list | tuple):
        keys = [str(key).strip() for key in value]
    elif isinstance(value, int | float) and not isinstance(value, bool):
        keys = [str(value)]
    else:
        raise ConfigError(
            "HOLDFAST_SECRET_KEY_FALLBACKS is a list of earlier secret keys, separated by "
            "commas or whitespace"
        )
    found: list[str] = []
    for key in keys:
        _refuse_weak(key, "Each key in HOLDFAST_SECRET_KEY_FALLBACKS")
        if key != app.config["SECRET_KEY"] and key not in found:
            found.append(key)
    return found


def read_secret_files(app: Flask, *, supplied: set[str]) -> None:
    """For each secret setting NAME (:data:`SECRET_SETTINGS`), take its value from the
    file HOLDFAST_NAME_FILE names, when set: the file's contents, stripped of surrounding
    whitespace (container secrets, systemd credentials, files readable by the service
    only). Raises ConfigError when NAME is given too (``supplied``: the names set in the
    environment, the .env file or the app's overrides), or when the file cannot be read
    or is empty."""
    for name in SECRET_SETTINGS:
        path = app.config.pop(f"{name}_FILE", None)
        if path in (None, ""):
            continue
        if name in supplied and app.config.get(name) not in (None, ""):
            raise ConfigError(
                f"Both HOLDFAST_{name} and HOLDFAST_{name}_FILE are set: set only one of them."
            )
        try:
            value = Path(str(path)).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ConfigError(
                f"HOLDFAST_{name}_FILE={path}: cannot read it ({error.strerror or error})."
            ) from error
        if not value:
            raise ConfigError(f"HOLDFAST_{name}_FILE={path}: the file is empty.")
        app.config[name] = value


def read_env_file(app: Flask) -> set[str]:
    """Read ``HOLDFAST_*`` settings from a .env file, when there is one: the file that
    HOLDFAST_ENV_FILE names (it must exist), else ``.env`` in the working directory.
    Read with python-dotenv (``NAME=value`` lines, ``#`` comments, quotes); values are
    parsed like the environment's (JSON when they are JSON, else text). A setting also in
    the real environment is taken from the environment: the .env file only fills in.
    Other names in the file are ignored, and the process environment is not changed.
    Returns the setting names (without the prefix) taken from the file. Raises
    ConfigError when HOLDFAST_ENV_FILE names a file that is not there."""
    named = os.environ.get("HOLDFAST_ENV_FILE")
    path = Path(named) if named else Path.cwd() / ".env"
    if not path.is_file():
        if named:
            raise ConfigError(f"HOLDFAST_ENV_FILE={named}: there is no such file.")
        return set()
    from dotenv import dotenv_values

    taken: set[str] = set()
    for key, value in sorted(dotenv_values(path).items()):
        if not key.startswith(ENV_PREFIX) or key in os.environ or value is None:
            continue
        if key == "HOLDFAST_ENV_FILE":
            continue
        name = key.removeprefix(ENV_PREFIX)
        app.config[name] = _parse_env_value(value)
        taken.add(name)
    return taken


def _parse_env_value(value: str) -> Any:
    """As Flask's ``from_prefixed_env`` reads a value: JSON when it parses, else the text."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def _boolean(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off", "")
    return bool(value)
