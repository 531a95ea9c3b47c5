"""Flask-Login's glue: ``current_user`` is a :class:`Principal` made from the request's
live session (app.web.authentication), never from Flask's cookie session; a view behind
``login_required`` without one is sent to sign in (app.web.sign_in_redirects)."""

from __future__ import annotations

from typing import Any

from flask import Flask, Request, Response, g, request
from flask_login import UserMixin

from app.core.errors import InvalidSession
from app.core.sessions import Current
from app.models import User
from app.web.authentication import authenticate
from app.web.extensions import login_manager
from app.web.sign_in_redirects import send_to_sign_in


class Principal(UserMixin):
    """Flask-Login's ``current_user``: the person behind the request's live session."""

    def __init__(self, current: Current) -> None:
        self.current = current

    @property
    def user(self) -> User:
        return self.current.user  # loaded on first use (see Current)

    def get_id(self) -> str:
        return self.current.facts.user.id

    # What every page's header shows, from the checked row: no ORM load for it.
    @property
    def email(self) -> str:
        return self.current.facts.user.email

    @property
    def role(self) -> str:
        return self.current.facts.user.role

    @property
    def is_active(self) -> bool:
        return not self.current.facts.user.disabled

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current.user, name)


def init_app(_app: Flask) -> None:
    """Hand Flask-Login its loaders (one login manager for every app of the process)."""
    login_manager.request_loader(_load_principal)
    login_manager.user_loader(_never_from_flask_session)
    login_manager.unauthorized_handler(_unauthorized)


def _load_principal(_req: Request) -> Principal | None:
    checked = authenticate()
    return None if checked is None else Principal(checked)


def _never_from_flask_session(_user_id: str) -> None:
    """Holdfast never keeps the person in Flask's cookie session; the token decides."""
    return None


def _unauthorized() -> Response:
    error = g.get("auth_error") or InvalidSession("Sign in to continue", reason="signed_out")
    come_back_to = request.full_path.rstrip("?") if request.method == "GET" else None
    return send_to_sign_in(error, come_back_to)
