"""Reverse-proxy check (/auth/verify) and the public JWKS (issue 4)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("proxy", __name__)
