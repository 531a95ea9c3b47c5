"""Admin-only views: the admin role, read fresh on every request, and a recent sign-in."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import flash, redirect, request, url_for
from flask_login import login_required

from app.core.access import FreshSignInRequired, require_admin
from app.core.totp import TotpRequired, require_for_admin
from app.web.authentication import current
from app.web.errors import json_error, wants_json
from app.web.i18n import said
from app.web.unit_of_work import now


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Members get 403; an admin whose code is older than 15 minutes is asked for a new
    one (pages: /login/again, then back; JSON: 401 fresh_login_required); where the
    tenant requires it, an admin without an authenticator app is taken to add one first
    (JSON: 403 totp_required)."""

    @wraps(view)
    @login_required
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            require_admin(current(), now())
            require_for_admin(current())
        except FreshSignInRequired as error:
            if wants_json():
                return json_error(error)
            target = request.full_path if request.method == "GET" else None
            return redirect(url_for("auth.again", next=target))
        except TotpRequired as error:  # the tenant requires an authenticator app of admins
            if wants_json():
                return json_error(error)
            flash(said(error))
            target = request.full_path if request.method == "GET" else None
            return redirect(url_for("security.index", next=target))
        return view(*args, **kwargs)

    return wrapper
