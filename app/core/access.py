"""Who may do what: tenant admins, and fresh sign-ins for admin work."""

from __future__ import annotations

from datetime import datetime, timedelta

from app.core.errors import Forbidden, HoldfastError
from app.core.sessions import Current

#: admin work needs a code entered this recently
FRESH_FOR = timedelta(minutes=15)


class FreshSignInRequired(HoldfastError):
    code, status, message = (
        "fresh_login_required",
        401,
        "Enter a new sign-in code to continue: admin pages need a recent sign-in.",
    )


def is_fresh(current: Current, now: datetime) -> bool:
    return now - current.session.authenticated_at < FRESH_FOR


def require_admin(current: Current, now: datetime, *, fresh: bool = True) -> None:
    """Raises Forbidden for a member and FreshSignInRequired when the admin's code was
    entered more than 15 minutes ago. The role is read from the row on every request,
    so a demoted admin loses access on their very next request."""
    if current.user.role != "admin":
        raise Forbidden("This needs a tenant admin.")
    if fresh and not is_fresh(current, now):
        raise FreshSignInRequired()
