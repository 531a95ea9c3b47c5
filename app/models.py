"""The store: typed SQLAlchemy models for tenants, people, devices, sessions, codes, events.

Rows that belong to a person carry ``tenant_id`` (the :class:`TenantScoped` mixin); the
query hook in :mod:`app.db` limits every ORM query to the current tenant, so no query has
to remember it. Public ids (``sess_…``, ``dev_…``) are the primary keys: opaque, random and
safe to show, while every secret (device cookie, one-time code) is stored only as a hash.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from app.clock import utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES = ("member", "admin")
LIMIT_MODES = ("evict_oldest", "deny")
END_REASONS = (
    "logout",
    "revoked_by_user",
    "revoked_by_admin",
    "limit_evicted",
    "idle_expired",
    "lifetime_expired",
    "suspicious",
    "keys_rotated",
    "user_erased",
)


def new_id(prefix: str) -> str:
    """A public id: a short prefix naming the kind, then 128 random bits."""
    return f"{prefix}_{secrets.token_urlsafe(16)}"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


PublicId = Annotated[str, mapped_column(String(40), primary_key=True)]
Timestamp = Annotated[datetime, mapped_column(UTCDateTime(), default=utcnow)]
OptionalTimestamp = Annotated[datetime | None, mapped_column(UTCDateTime(), nullable=True)]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TenantScoped:
    """Rows of one tenant. Queries see only the current tenant's rows (see app.db)."""

    tenant_id: Mapped[str] = mapped_column(String(40), ForeignKey("tenants.id"), index=True)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[PublicId] = mapped_column(default=lambda: new_id("ten"))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[Timestamp]

    # The session policy. Durations are in seconds.
    #: a session with no request for this long ends (reason idle_expired)
    idle_timeout: Mapped[int] = mapped_column(Integer, default=30 * 60)
    #: a session never outlives created_at + this (reason lifetime_expired)
    absolute_lifetime: Mapped[int] = mapped_column(Integer, default=12 * 3600)
    #: activity moves the idle deadline (never past the absolute deadline)
    extend_on_activity: Mapped[bool] = mapped_column(Boolean, default=True)
    #: how long trust in a device lasts
    trusted_lifetime: Mapped[int] = mapped_column(Integer, default=30 * 86400)
    #: sessions on a trusted device may live up to trusted_lifetime instead
    trusted_outlives_absolute: Mapped[bool] = mapped_column(Boolean, default=True)
    #: live sessions a person may hold at once; 0 means no limit
    max_sessions_per_user: Mapped[int] = mapped_column(Integer, default=10)
    #: what a sign-in past the limit does: evict_oldest or deny
    limit_mode: Mapped[str] = mapped_column(String(20), default="evict_oldest")
    #: email the person when they sign in on a device not seen before
    notify_new_device: Mapped[bool] = mapped_column(Boolean, default=True)


class User(TenantScoped, Base):
    __tablename__ = "users"

    id: Mapped[PublicId] = mapped_column(default=lambda: new_id("usr"))
    #: lower-cased; unique across the whole deployment
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20), default="member")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[Timestamp]
    last_sign_in_at: Mapped[OptionalTimestamp]

    tenant: Mapped[Tenant] = relationship(lazy="raise")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class Device(TenantScoped, Base):
    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("user_id", "cookie_hash", name="uq_devices_user_cookie"),)

    id: Mapped[PublicId] = mapped_column(default=lambda: new_id("dev"))
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id"), index=True)
    #: keyed hash of the long-lived device cookie (or an API client's deviceId)
    cookie_hash: Mapped[str] = mapped_column(String(64))
    #: the name the person gave it; None shows the derived "Chrome on macOS"
    name: Mapped[str | None] = mapped_column(String(100))
    #: phone, tablet, desktop, bot or other
    kind: Mapped[str] = mapped_column(String(20), default="other")
    os: Mapped[str] = mapped_column(String(100), default="")
    browser: Mapped[str] = mapped_column(String(100), default="")
    first_seen_at: Mapped[Timestamp]
    last_seen_at: Mapped[Timestamp]
    trusted_until: Mapped[OptionalTimestamp]

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.browser and self.os:
            return f"{self.browser} on {self.os}"
        return self.browser or self.os or "Unknown device"

    def is_trusted(self, now: datetime) -> bool:
        return self.trusted_until is not None and self.trusted_until > now


class UserSession(TenantScoped, Base):
    """One sign-in on one device."""

    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_user_live", "user_id", "ended_at"),
        Index("ix_sessions_tenant_last_seen", "tenant_id", "last_seen_at"),
        Index("ix_sessions_tenant_created", "tenant_id", "created_at"),
    )

    id: Mapped[PublicId] = mapped_column(default=lambda: new_id("sess"))
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id"))
    device_id: Mapped[str] = mapped_column(String(40), ForeignKey("devices.id"), index=True)
    created_at: Mapped[Timestamp]
    #: when the person last proved who they are (code entered); drives fresh-login checks
    authenticated_at: Mapped[Timestamp]
    #: last request written down; writes are throttled, so this lags by up to a minute
    last_seen_at: Mapped[Timestamp]
    idle_deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    absolute_deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    #: activity moves idle_deadline (the tenant policy, or the API client's choice)
    extend_on_activity: Mapped[bool] = mapped_column(Boolean, default=True)
    ip: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    location: Mapped[str | None] = mapped_column(String(200))
    ended_at: Mapped[OptionalTimestamp]
    end_reason: Mapped[str | None] = mapped_column(String(30))

    user: Mapped[User] = relationship(lazy="raise")
    device: Mapped[Device] = relationship(lazy="raise")

    @property
    def is_ended(self) -> bool:
        return self.ended_at is not None


class Challenge(Base):
    """A one-time code sent by email. Unknown emails get a challenge too (user_id None),
    so a caller cannot tell from any answer whether an account exists."""

    __tablename__ = "challenges"

    id: Mapped[PublicId] = mapped_column(default=lambda: new_id("chl"))
    tenant_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("tenants.id"))
    user_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("users.id"), index=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    #: HMAC of the code under a key derived from the secret key
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[Timestamp]
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: wrong codes entered so far; at the limit the challenge is dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    consumed_at: Mapped[OptionalTimestamp]
    ip: Mapped[str] = mapped_column(String(45), default="")


class Event(Base):
    """The append-only audit trail: who did what, to whom, from where, when."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_tenant_id_id", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("tenants.id"))
    at: Mapped[Timestamp]
    #: dotted name, e.g. session.created, code.failed, session.ended
    kind: Mapped[str] = mapped_column(String(50), index=True)
    #: the person who acted (None for the system or an unknown caller)
    actor_id: Mapped[str | None] = mapped_column(String(40))
    #: the person acted upon
    subject_id: Mapped[str | None] = mapped_column(String(40), index=True)
    session_id: Mapped[str | None] = mapped_column(String(40))
    ip: Mapped[str] = mapped_column(String(45), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SigningKey(Base):
    """A token signing key. The private half is encrypted under a key derived from
    HOLDFAST_SECRET_KEY, so a database dump alone cannot mint tokens."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(40), primary_key=True)
    alg: Mapped[str] = mapped_column(String(10), default="ES256")
    public_pem: Mapped[str] = mapped_column(Text)
    private_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[Timestamp]
    #: set when a newer key took over signing; the key still verifies until verify_until
    retired_at: Mapped[OptionalTimestamp]
    verify_until: Mapped[OptionalTimestamp]
