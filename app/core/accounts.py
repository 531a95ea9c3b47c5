"""Tenants and the people in them.

A person's account belongs to one tenant; the same address may have an account in
several tenants (one ``users`` row each, unique by tenant and address), as a person
may work for two organisations. Adding someone to a tenant looks only at that tenant:
it never tells one tenant about another's members, and no tenant can take an address
away from another.
"""

from __future__ import annotations

import re
from datetime import datetime

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import i18n
from app.core import events
from app.core.errors import N_, ValidationError
from app.core.events import Origin
from app.models import ROLES, Tenant, User

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def normalise_email(raw: str) -> str:
    """The lower-cased address, or ValidationError naming the problem."""
    raw = (raw or "").strip()
    if not raw or len(raw) > 320:
        raise ValidationError(N_("Enter your email address."), field="email")
    try:
        result = validate_email(
            raw, check_deliverability=False, globally_deliverable=False, test_environment=True
        )
    except EmailNotValidError as error:
        raise ValidationError(
            N_("That is not a valid email address: %(reason)s"),
            words={"reason": str(error)},
            field="email",
        ) from error
    return result.normalized.lower()


def accounts_of(db: Session, email: str, *, enabled_only: bool = True) -> list[User]:
    """The address's accounts in every tenant (each tenant has at most one), by tenant
    name; disabled ones left out unless asked for. An address may belong to several
    organisations: see app.core.signin for how the person picks one."""
    query = (
        select(User)
        .join(Tenant, Tenant.id == User.tenant_id)
        .where(User.email == email)
        .order_by(Tenant.name, Tenant.slug)
        .execution_options(all_tenants=True)
    )
    if enabled_only:
        query = query.where(User.disabled.is_(False))
    return list(db.scalars(query))


def account_in(db: Session, tenant_id: str, email: str) -> User | None:
    """The address's account in one tenant, or None."""
    return db.scalars(
        select(User)
        .where(User.tenant_id == tenant_id, User.email == email)
        .execution_options(all_tenants=True)
    ).one_or_none()


def create_tenant(
    db: Session, slug: str, name: str, *, now: datetime, origin: Origin = events.SYSTEM
) -> Tenant:
    if not SLUG.match(slug or ""):
        raise ValidationError(
            N_("A tenant slug is 1-64 lower-case letters, digits and dashes."), field="slug"
        )
    if db.scalar(select(func.count()).select_from(Tenant).where(Tenant.slug == slug)):
        raise ValidationError(
            N_("A tenant called %(slug)r exists already."), words={"slug": slug}, field="slug"
        )
    if not (name or "").strip():
        raise ValidationError(N_("Give the tenant a name."), field="name")
    tenant = Tenant(slug=slug, name=name.strip(), created_at=now)
    db.add(tenant)
    db.flush()
    events.record(
        db,
        "tenant.created",
        now=now,
        tenant_id=tenant.id,
        origin=origin,
        slug=slug,
        name=tenant.name,
    )
    return tenant


def add_user(
    db: Session,
    tenant: Tenant,
    email: str,
    *,
    now: datetime,
    role: str = "member",
    name: str | None = None,
    actor_id: str | None = None,
    origin: Origin = events.SYSTEM,
) -> User:
    email = normalise_email(email)
    if role not in ROLES:
        raise ValidationError(
            N_("Role must be one of %(roles)s."), words={"roles": ", ".join(ROLES)}, field="role"
        )
    # Only this tenant's own people count: whether the address has an account in another
    # organisation is none of this one's business, and taking it here keeps nobody else
    # from adding it there (accounts are per tenant).
    if account_in(db, tenant.id, email) is not None:
        raise ValidationError(
            N_("%(email)s is in %(tenant)s already."),
            words={"email": email, "tenant": tenant.name},
            field="email",
        )
    user = User(tenant_id=tenant.id, email=email, role=role, name=name, created_at=now)
    db.add(user)
    db.flush()
    events.record(
        db,
        "user.created",
        now=now,
        tenant_id=tenant.id,
        origin=origin,
        actor_id=actor_id,
        subject_id=user.id,
        email=email,
        role=role,
    )
    return user


def tenant_by_slug(db: Session, slug: str) -> Tenant | None:
    return db.scalars(select(Tenant).where(Tenant.slug == slug)).one_or_none()


def set_language(db: Session, user: User, language: str, *, now: datetime, origin: Origin) -> None:
    """Set the language of ``user``'s pages and mails: one of app.i18n.LANGUAGES, or ""
    for the browser's choice (stored as None). Audited as ``user.language_changed``.
    Raises ValidationError for a language Holdfast does not speak."""
    chosen = language or None
    if chosen is not None and i18n.supported(chosen) is None:
        raise ValidationError(
            N_("Choose one of: %(languages)s."),
            words={"languages": ", ".join(i18n.LANGUAGES)},
            field="language",
        )
    if user.language == chosen:
        return
    events.record(
        db,
        "user.language_changed",
        now=now,
        tenant_id=user.tenant_id,
        origin=origin,
        actor_id=user.id,
        subject_id=user.id,
        old=user.language,
        new=chosen,
    )
    user.language = chosen
    db.flush()
