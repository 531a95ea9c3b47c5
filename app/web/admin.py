"""Tenant admin: dashboard and sessions explorer (issue 5)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")
