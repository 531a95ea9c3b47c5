"""Who may do what: tenant admins, fresh sign-ins for admin work, and the operator at
the command line."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.core.errors import N_, Forbidden, HoldfastError
from app.core.sessions import Current

#: admin work needs a code entered this recently
FRESH_FOR = timedelta(minutes=15)


class FreshSignInRequired(HoldfastError):
    code, status, message = (
        "fresh_login_required",
        401,
        "Enter a new sign-in code to continue: admin pages need a recent sign-in.",
    )


@dataclass(frozen=True)
class Operator:
    """Whoever runs the ``holdfast`` command on the server (``holdfast user disable``…).
    The core's admin actions on people take one in place of a signed-in admin: the same
    rules apply (a tenant keeps an enabled admin), and the change is audited the same
    way, with no actor (the operator is no person of the tenant) and ``by: "operator"``
    in the event's details. The caller scopes the database session to the person's
    tenant, as a signed-in admin's request is."""

    #: how the operator acted, kept in the events' details
    via: str = "cli"


#: who an admin action on people is done by: a signed-in admin, or the operator
Actor = Current | Operator


def actor_id(actor: Actor) -> str | None:
    """The person who acts (None for the operator)."""
    return None if isinstance(actor, Operator) else actor.user.id


def actor_details(actor: Actor) -> dict[str, Any]:
    """What an action's event says about who did it beyond ``actor_id``."""
    return {"by": "operator", "via": actor.via} if isinstance(actor, Operator) else {}


def is_fresh(current: Current, now: datetime) -> bool:
    return now - current.session.authenticated_at < FRESH_FOR


def require_admin(current: Current, now: datetime, *, fresh: bool = True) -> None:
    """Raises Forbidden for a member and FreshSignInRequired when the admin's code was
    entered more than 15 minutes ago. The role is read from the row on every request,
    so a demoted admin loses access on their very next request."""
    if current.user.role != "admin":
        raise Forbidden(N_("This needs a tenant admin."))
    if fresh and not is_fresh(current, now):
        raise FreshSignInRequired()
