"""Helpers shared by the admin console tests (no tests here).

Sessions are arranged as rows straight in the database when a test needs exact times,
kinds or addresses; everything acted on goes through the real HTTP pages.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app import Services
from app.models import Device, Event, Tenant, User, UserSession
from tests.conftest import Mailbox, csrf_from, login

HTMX = {"HX-Request": "true"}


def sign_in(app: Flask, mailbox: Mailbox, email: str, **options: Any) -> FlaskClient:
    """A new browser signed in as ``email`` through the real code flow."""
    client = app.test_client()
    answer = login(client, mailbox, email, **options)
    assert answer.status_code == 302, answer.text
    return client


def token_from(client: FlaskClient, url: str = "/devices") -> str:
    return csrf_from(client.get(url).text)


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
