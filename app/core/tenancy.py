"""A tenant's own rows. Every admin query runs on a database session scoped to the
admin's tenant (app.db), so another tenant's rows are simply not there: looking one up
by id answers NotFound. Rows the query hook does not scope (events) filter on
:func:`scoped_tenant_id`, which fails closed on an unscoped session."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, func, literal_column, select
from sqlalchemy.orm import Session

from app.core.errors import N_, NotFound
from app.models import User, UserSession


def tenant_session(db: Session, session_id: str) -> UserSession:
    """A session of the admin's tenant, or NotFound (also for another tenant's)."""
    session = db.get(UserSession, session_id) if isinstance(session_id, str) else None
    if session is None:
        raise NotFound(N_("No such session"))
    return session


def tenant_user(db: Session, user_id: str) -> User:
    """A person of the admin's tenant, or NotFound (also for another tenant's)."""
    user = db.get(User, user_id) if isinstance(user_id, str) else None
    if user is None:
        raise NotFound(N_("No such person"))
    return user


def people_by_id(db: Session, ids: set[str | None]) -> dict[str, User]:
    """The tenant's people among ``ids`` (to show emails beside ids); others are left out."""
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    return {u.id: u for u in db.scalars(select(User).where(User.id.in_(wanted)))}


def live_condition(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """What "live" means in SQL: not ended, and neither stored deadline passed. (A
    tightened policy shortens sessions further at their next request; see sessions.)"""
    return (
        UserSession.ended_at.is_(None),
        UserSession.idle_deadline > now,
        UserSession.absolute_deadline > now,
    )


def scoped_tenant_id(db: Session) -> str:
    """The tenant ``db`` is scoped to. Rows that are not tenant-scoped by the query hook
    (events) filter on this; an unscoped session fails closed instead of showing every
    tenant's rows."""
    tenant_id = db.info.get("tenant_id")
    if not tenant_id:
        raise RuntimeError("an admin query ran on a database session not scoped to a tenant")
    return str(tenant_id)


def selective(db: Session, condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """``condition`` (one person's, or a few people's or devices' sessions), marked as
    matching very few rows. SQLite without planner statistics believes ``tenant_id = ?``
    is as selective as ``user_id = ?`` and would walk the whole tenant down its sort
    index to save a sort of a handful of rows; ``likelihood()`` (a no-op otherwise) sends
    it to the per-person index instead. Other databases keep their statistics."""
    if db.get_bind().dialect.name == "sqlite":
        # SQLite wants the probability as a constant in the SQL text, not a parameter.
        return func.likelihood(condition, literal_column("0.000001"))  # type: ignore[no-any-return]
    return condition


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
