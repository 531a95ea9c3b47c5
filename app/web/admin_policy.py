"""Tenant admin: the session policy page (issue 3)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin_policy", __name__, url_prefix="/admin")
