"""Arranging and reading state straight in the database: migrating a fresh one, the
factory for tenants and people, sessions written as rows when a test needs exact times,
kinds or addresses, and reading back events, sessions and people."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app import create_app, migrate
from app.clock import FrozenClock
from app.core import accounts, events, mfa, totp
from app.models import Device, Event, Tenant, User, UserSession
from app.services import Services
from testkit.values import SECRET, START


def prepare_database(url: str, folder: Path) -> None:
    """Migrate the database at ``url`` and give it a signing key: what `holdfast db
    upgrade` does. The app's connections are closed after, so a PostgreSQL database can
    serve as a template to clone."""
    app = create_app(
        {"DATABASE_URL": url, "SECRET_KEY": SECRET, "MAIL_URL": "console"}, instance_path=folder
    )
    services: Services = app.extensions["holdfast"]
    migrate.upgrade(services.database.engine, sealer=services.sealer)
    with services.session(write=True) as db:
        db.add(services.keys.new_key(START))
        db.commit()
    services.database.dispose()


@dataclass
class Factory:
    services: Services
    clock: FrozenClock

    def tenant(self, slug: str = "acme", **policy: Any) -> Tenant:
        with self.services.session(write=True) as db:
            tenant = accounts.create_tenant(db, slug, slug.title(), now=self.clock.now())
            for name, value in policy.items():
                setattr(tenant, name, value)
            db.commit()
            return tenant

    def user(self, email: str, tenant: Tenant, role: str = "member", **fields: Any) -> User:
        with self.services.session(write=True) as db:
            tenant_row = db.get_one(Tenant, tenant.id)
            user = accounts.add_user(db, tenant_row, email, role=role, now=self.clock.now())
            for name, value in fields.items():
                setattr(user, name, value)
            db.commit()
            return user

    def policy(self, tenant: Tenant, **policy: Any) -> None:
        with self.services.session(write=True) as db:
            row = db.get_one(Tenant, tenant.id)
            for name, value in policy.items():
                setattr(row, name, value)
            db.commit()


def add_session(
    services: Services,
    tenant: Tenant,
    user: User,
    *,
    created: datetime,
    last_seen: datetime | None = None,
    ended: datetime | None = None,
    reason: str | None = None,
    kind: str = "desktop",
    os: str = "macOS",
    browser: str = "Chrome",
    device_name: str | None = None,
    ip: str = "10.0.0.1",
    location: str | None = None,
    trusted_until: datetime | None = None,
    lifetime: timedelta = timedelta(hours=12),
) -> str:
    """A device and one session on it, written as rows; returns the session id."""
    last_seen = last_seen or created
    with services.session(write=True) as db:
        device = Device(
            tenant_id=tenant.id,
            user_id=user.id,
            cookie_hash=secrets.token_hex(32),
            name=device_name,
            kind=kind,
            os=os,
            browser=browser,
            first_seen_at=created,
            last_seen_at=last_seen,
            trusted_until=trusted_until,
        )
        db.add(device)
        db.flush()
        session = UserSession(
            tenant_id=tenant.id,
            user_id=user.id,
            device_id=device.id,
            created_at=created,
            authenticated_at=created,
            last_seen_at=last_seen,
            idle_deadline=last_seen + timedelta(minutes=30),
            absolute_deadline=created + lifetime,
            ip=ip,
            location=location,
            user_agent="",
            ended_at=ended,
            end_reason=reason,
        )
        db.add(session)
        db.commit()
        return session.id


def events_of(services: Services, kind: str, **where: Any) -> list[Event]:
    with services.session() as db:
        query = select(Event).where(Event.kind == kind).order_by(Event.id)
        for name, value in where.items():
            query = query.where(getattr(Event, name) == value)
        return list(db.scalars(query))


def session_row(services: Services, session_id: str) -> UserSession:
    with services.session() as db:
        return db.get_one(UserSession, session_id)


def user_row(services: Services, user_id: str) -> User:
    with services.session() as db:
        return db.get_one(User, user_id)


def give_app(services: Services, user_id: str) -> tuple[str, list[str]]:
    """An authenticator app and ten recovery codes for the person, as if added on the
    security page: (the app's secret, the codes)."""
    import pyotp

    secret = pyotp.random_base32()
    with services.session(write=True) as s:
        user = s.get_one(User, user_id)
        user.totp_secret = totp._seal(services.hasher, user.id, secret)
        user.totp_enabled_at = services.clock.now()
        codes = mfa.make_recovery_codes(
            s, services.hasher, user, now=services.clock.now(), origin=events.SYSTEM
        )
        s.commit()
    return secret, codes
