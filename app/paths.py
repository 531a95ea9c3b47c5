"""Where Holdfast finds its files, in a checkout and in an installed wheel.

A checkout keeps ``app/``, ``templates/``, ``static/``, ``migrations/`` and ``deploy/``
side by side at its root. The wheel cannot put folders
beside the package in site-packages, so it carries the four inside it, as
``app/templates/``, ``app/static/``, ``app/migrations/`` and ``app/deploy/``
(pyproject.toml maps them; ``make dist`` builds it). Each folder is looked for inside the
package first and at the checkout's root second, so the same code runs from both.

The instance folder (the SQLite database and a generated secret key) is a third kind of
place: the operator's, never the code's. See :func:`data_dir`.
"""

from __future__ import annotations

import os
from pathlib import Path

#: the ``app`` package itself
PACKAGE = Path(__file__).resolve().parent
#: the repository root when running from a checkout; None when installed from a wheel
CHECKOUT: Path | None = PACKAGE.parent if (PACKAGE.parent / "pyproject.toml").is_file() else None


def _shipped(name: str) -> Path:
    inside = PACKAGE / name
    if inside.is_dir():
        return inside  # an installed wheel
    return PACKAGE.parent / name  # a checkout


TEMPLATES = _shipped("templates")
STATIC = _shipped("static")
MIGRATIONS = _shipped("migrations")
#: gunicorn settings (``gunicorn.conf.py``), its worker, nginx and systemd examples
DEPLOY = _shipped("deploy")
GUNICORN_CONF = DEPLOY / "gunicorn.conf.py"


def data_dir() -> Path:
    """The instance folder: ``HOLDFAST_DATA_DIR`` when set (a relative path is taken from
    the current directory); otherwise ``instance/`` at the checkout's root when running
    from a checkout, or in the current directory when installed, never inside
    site-packages (where an upgrade would delete it). Not created here: the settings
    create it when they first write to it (app.config)."""
    configured = os.environ.get("HOLDFAST_DATA_DIR", "").strip()
    if configured:
        return Path(configured).expanduser().resolve()
    if CHECKOUT is not None:
        return CHECKOUT / "instance"
    return Path.cwd().resolve() / "instance"
