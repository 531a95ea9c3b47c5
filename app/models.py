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
    false,
    text,
    true,
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
#: what a mid-session change of IP or user-agent family does (see app.core.request_rules)
BINDING_ACTIONS = ("allow", "flag", "end")
ALERT_STATUSES = ("open", "acknowledged", "resolved")
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

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        """On SQLite, one C call per value instead of SQLAlchemy's parse, this class's
        step and a ``replace``: SQLite keeps these columns as UTC text without a zone
        (``2026-11-23 16:39:01.916697``), so the value with ``+00:00`` appended is an ISO
        timestamp in UTC (≈ 0.1 µs against 1 µs; the hot path reads four a request).
        Anything else goes the general way, which keeps the inner type's parsing."""
        general = super().result_processor(dialect, coltype)
        if dialect.name != "sqlite" or general is None:
            return general
        parse = datetime.fromisoformat

        def process(value: Any) -> datetime | None:
            if value is None:
                return None
            try:
                parsed = parse(value + "+00:00")
            except (TypeError, ValueError):
                return general(value)  # type: ignore[no-any-return]
            # A date alone ("2026-11-23") parses too, "+" read as the separator, to a
            # datetime without a zone: that one goes the general way.
            return parsed if parsed.tzinfo is not None else general(value)  # type: ignore[no-any-return]

        return process


PublicId = Annotated[str, mapped_column(String(40), primary_key=True)]
Timestamp = Annotated[datetime, mapped_column(UTCDateTime(), default=utcnow)]
OptionalTimestamp = Annotated[datetime | None, mapped_column(UTCDateTime(), nullable=True)]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TenantScoped:
    """Rows of one tenant. Queries see only the current tenant's rows (see app.db)."""

    tenant_id: Mapped[str] = mapped_column(String(40), ForeignKey("tenants.id"), index=True)


# The hot path's one statement (app.core.session_check.SESSION_FACTS) joins a session with its
# person, tenant and device by primary key. Each of those three tables has an index on
# ``id`` followed by exactly the columns the statement reads from it, so SQLite answers
# each join from the index alone: one B-tree descent where the primary key's index and
# then the table take two (a lookup 13 → 10 µs; docs/benchmarks.md). A column added to
# the statement must be added to its index too: tests/test_sessions_core.py checks that
# the plan stays index-only.


class Tenant(Base):
    __tablename__ = "tenants"
    __table_args__ = (
        Index(  # the hot path's (see above)
            "ix_tenants_session_policy",
            "id",
            "idle_timeout",
            "absolute_lifetime",
            "extend_on_activity",
            "trusted_lifetime",
            "trusted_outlives_absolute",
            "ip_change",
            "ua_change",
            "trusted_idle_timeout",
        ),
    )

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
    #: a session on a trusted device ends after this long without a request instead of
    #: idle_timeout, when this is the longer (app.core.sessions.idle_timeout)
    trusted_idle_timeout: Mapped[int] = mapped_column(
        Integer, default=8 * 3600, server_default=text("28800")
    )
    #: live sessions a person may hold at once; 0 means no limit
    max_sessions_per_user: Mapped[int] = mapped_column(Integer, default=10)
    #: what a sign-in past the limit does: evict_oldest or deny
    limit_mode: Mapped[str] = mapped_column(String(20), default="evict_oldest")
    #: email the person when they sign in on a device not seen before
    notify_new_device: Mapped[bool] = mapped_column(Boolean, default=True)
    # Security monitoring (app.core.sign_in_rules, app.core.totp).
    #: a session's IP changes mid-session: allow, flag (alert) or end (reason suspicious)
    ip_change: Mapped[str] = mapped_column(String(10), default="allow", server_default="allow")
    #: a session's browser or OS family changes mid-session: allow, flag or end
    ua_change: Mapped[str] = mapped_column(String(10), default="allow", server_default="allow")
    #: admins must have a passkey or an authenticator app before any admin page
    require_totp_for_admins: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # Passkeys (app.core.passkeys).
    #: people may add passkeys and sign in with them
    allow_passkeys: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    #: everyone signs in with a passkey; codes only enrol a first passkey on a device
    require_passkeys: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: email the tenant's admins about every high-severity alert
    notify_high_alerts: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Retention (app.core.retention, run by `holdfast purge`), in days.
    #: ended sessions, and devices left with no session and no trust, are deleted after this
    sessions_retention_days: Mapped[int] = mapped_column(
        Integer, default=90, server_default=text("90")
    )
    #: audit events are deleted after this (the chain stays verifiable from its anchor)
    events_retention_days: Mapped[int] = mapped_column(
        Integer, default=365, server_default=text("365")
    )
    #: IP addresses are cut to their network (IPv4 /24, IPv6 /48) after this
    ip_anonymise_days: Mapped[int] = mapped_column(Integer, default=30, server_default=text("30"))


class User(TenantScoped, Base):
    """One person's account in one tenant. An address may have accounts in several
    tenants (one row each, unique per tenant): the sign-in code goes to the address,
    and the person picks the organisation afterwards (app.core.signin)."""

    __tablename__ = "users"
    __table_args__ = (
        Index("ix_users_session_facts", "id", "email", "role", "disabled"),  # the hot path's
        Index("ix_users_tenant_email", "tenant_id", "email", unique=True),
        # sign-in finds an address's accounts in every tenant
        Index("ix_users_email", "email"),
    )

    id: Mapped[PublicId] = mapped_column(default=lambda: new_id("usr"))
    #: lower-cased; unique within the tenant
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20), default="member")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[Timestamp]
    last_sign_in_at: Mapped[OptionalTimestamp]
    #: the language of this person's pages and mails (app.i18n.LANGUAGES); None: the
    #: browser's Accept-Language decides (and English for mail)
    language: Mapped[str | None] = mapped_column(String(16))
    #: the authenticator app's TOTP secret, AES-GCM encrypted (app.core.totp); set but
    #: not enabled while an enrolment waits for its first code
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_enabled_at: Mapped[OptionalTimestamp]
    #: the last 30-second step whose code was accepted: each code works once, on any node
    totp_last_step: Mapped[int | None] = mapped_column(Integer)

    tenant: Mapped[Tenant] = relationship(lazy="raise")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class Device(TenantScoped, Base):
    __tablename__ = "devices"
    __table_args__ = (
        UniqueConstraint("user_id", "cookie_hash", name="uq_devices_user_cookie"),
        Index("ix_devices_session_facts", "id", "trusted_until"),  # the hot path's (see Tenant)
    )

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
        # The admin console (app.core.stats, app.core.admin): live sessions only, with
        # every column the live figures, pies and explorer page read, so counting and
        # listing them never touches the table or the ended millions.
        Index(
            "ix_sessions_live",
            "tenant_id",
            "idle_deadline",
            "absolute_deadline",
            "last_seen_at",
            "created_at",
            "user_id",
            "device_id",
            "id",
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
        # Sessions that ended, by when: the session-length chart.
        Index(
            "ix_sessions_ended",
            "tenant_id",
            "ended_at",
            "created_at",
            sqlite_where=text("ended_at IS NOT NULL"),
            postgresql_where=text("ended_at IS NOT NULL"),
        ),
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
    #: how the session was signed in: code, app, recovery, passkey or link (None: before
    #: this was recorded); OpenID ID tokens derive ``amr`` from it
    sign_in_method: Mapped[str | None] = mapped_column(String(20))
    #: when a request with this ended session's token was first refused: its device
    #: finding out; later uses are replays (app.core.request_rules)
    token_refused_at: Mapped[OptionalTimestamp]

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
    #: keyed hash of the sign-in link's secret sent with the code (app.core.sign_in_links)
    link_hash: Mapped[str | None] = mapped_column(String(64))


MFA_PURPOSES = ("sign_in", "reauth", "enrol")


class MfaChallenge(TenantScoped, Base):
    """The second step of a sign-in or fresh sign-in (app.core.mfa): the emailed code was
    right, and the person's authenticator app code (or a recovery code) comes next. For
    an admin whose tenant requires an app and who has none yet, the step is adding one
    (``enrol``). Nothing signs in until it is answered."""

    __tablename__ = "mfa_challenges"

    id: Mapped[PublicId] = mapped_column(default=lambda: new_id("mfa"))
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id"), index=True)
    #: sign_in, reauth (a fresh sign-in of ``session_id``) or enrol (add an app first)
    purpose: Mapped[str] = mapped_column(String(10))
    #: the session a fresh sign-in (reauth) is for
    session_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[Timestamp]
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: wrong codes entered so far; at the limit the step is dead (sign in again)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    consumed_at: Mapped[OptionalTimestamp]
    ip: Mapped[str] = mapped_column(String(45), default="")
    #: the first step's sign-in options (device name and kind, trust, expiresIn,
    #: extendOnActivity, the session chosen to end), applied when this step is answered
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: keyed hash of the device cookie (or deviceId) the first step came with, as
    #: devices.cookie_hash; None: the sign-in makes a new device cookie
    device_hash: Mapped[str | None] = mapped_column(String(64))


class RecoveryCode(TenantScoped, Base):
    """One of a person's ten single-use recovery codes: signs in instead of the
    authenticator app's code. Only a keyed hash is stored; the codes are shown once."""

    __tablename__ = "recovery_codes"
    __table_args__ = (UniqueConstraint("user_id", "code_hash", name="uq_recovery_codes_user_code"),)

    id: Mapped[PublicId] = mapped_column(default=lambda: new_id("rec"))
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id"), index=True)
    #: keyed hash of the code (app.core.mfa)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[Timestamp]
    used_at: Mapped[OptionalTimestamp]


SIGN_IN_METHODS = ("code", "app", "recovery", "passkey", "link")


class Passkey(TenantScoped, Base):
    """A person's WebAuthn credential (app.core.passkeys): a discoverable key pair whose
    private half never leaves their authenticator. Only the public key is stored."""

    __tablename__ = "passkeys"

    id: Mapped[PublicId] = mapped_column(default=lambda: new_id("pkey"))
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id"), index=True)
    #: the authenticator's credential id, base64url without padding (unique everywhere)
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    #: the COSE public key as the authenticator gave it
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    #: the authenticator's signature counter at the last use; one going back is a clone
    sign_count: Mapped[int] = mapped_column(Integer, default=0)
    #: the person's name for it ("Chrome on macOS" until renamed)
    name: Mapped[str] = mapped_column(String(100))
    aaguid: Mapped[str] = mapped_column(String(36), default="")
    #: transports the browser reported (usb, internal, hybrid...)
    transports: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: may be synced to other devices (BE flag); fixed for a credential's life
    backup_eligible: Mapped[bool] = mapped_column(Boolean, default=False)
    #: is backed up / synced now (BS flag), as of the last use
    backed_up: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[Timestamp]
    #: the device it was added on, and the one it was last used on
    created_device_id: Mapped[str | None] = mapped_column(String(40))
    last_used_at: Mapped[OptionalTimestamp]
    last_device_id: Mapped[str | None] = mapped_column(String(40))


PASSKEY_PURPOSES = ("register", "sign_in", "reauth")


class PasskeyChallenge(Base):
    """One WebAuthn ceremony's challenge: single use, 5 minutes, bound to the relying
    party id and origin it was made for (app.core.passkey_challenges)."""

    __tablename__ = "passkey_challenges"

    id: Mapped[PublicId] = mapped_column(default=lambda: new_id("pkc"))
    #: register, sign_in or reauth
    purpose: Mapped[str] = mapped_column(String(10))
    #: the random challenge the authenticator signs
    challenge: Mapped[bytes] = mapped_column(LargeBinary)
    rp_id: Mapped[str] = mapped_column(String(253))
    origin: Mapped[str] = mapped_column(String(300))
    #: the tenant a sign-in is limited to (None: any); the person's tenant otherwise
    tenant_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("tenants.id"))
    #: the person registering or signing in again (None for a sign-in)
    user_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("users.id"))
    #: the session a registration or fresh sign-in belongs to
    session_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[Timestamp]
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    consumed_at: Mapped[OptionalTimestamp]


class Event(Base):
    """The append-only audit trail: who did what, to whom, from where, when."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_tenant_id_id", "tenant_id", "id"),
        # Unique: even a bug in the locking could not fork a tenant's chain.
        Index("ix_events_tenant_seq", "tenant_id", "seq", unique=True),
        Index("ix_events_actor_id", "actor_id"),
        # The audit log's kind filter and the dashboard's failed codes today.
        Index("ix_events_tenant_kind_at", "tenant_id", "kind", "at"),
    )

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
    #: the event's place in its tenant's chain, from 1 (app.core.audit)
    seq: Mapped[int | None] = mapped_column(Integer)
    #: the hash of the tenant's previous event (app.core.audit): the chain link
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    #: SHA-256 over prev_hash and this event's sealed form (app.core.audit)
    hash: Mapped[str | None] = mapped_column(String(64))


class SigningKey(Base):
    """A token signing key. The private half is encrypted under a key derived from
    HOLDFAST_SECRET_KEY, so a database dump alone cannot mint tokens."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(40), primary_key=True)
    alg: Mapped[str] = mapped_column(String(10), default="ES256")
    public_pem: Mapped[str] = mapped_column(Text)
    private_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[Timestamp]
    #: when it starts signing: a rotation publishes the new key in the JWKS first, for
    #: longer than any node or verifier keeps an older copy of the key set (app.tokens);
    #: None for keys made before publication was staged (they signed from created_at)
    active_from: Mapped[OptionalTimestamp]
    #: when a newer key took over signing; the key still verifies until verify_until
    retired_at: Mapped[OptionalTimestamp]
    verify_until: Mapped[OptionalTimestamp]


class Alert(TenantScoped, Base):
    """A suspicious-activity finding for the tenant's admins (app.core.alerts)."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_alerts_tenant_status", "tenant_id", "status", "created_at"),
    )

    id: Mapped[PublicId] = mapped_column(default=lambda: new_id("alr"))
    created_at: Mapped[Timestamp]
    #: which rule found it, e.g. new_device, impossible_travel, session_replay
    kind: Mapped[str] = mapped_column(String(40))
    #: low, medium or high; high alerts are emailed to the tenant's admins
    severity: Mapped[str] = mapped_column(String(10))
    #: open, acknowledged (someone is looking) or resolved
    status: Mapped[str] = mapped_column(String(20), default="open")
    #: the person concerned (no foreign key: alerts outlive erased people, like events)
    user_id: Mapped[str | None] = mapped_column(String(40), index=True)
    session_id: Mapped[str | None] = mapped_column(String(40))
    ip: Mapped[str] = mapped_column(String(45), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    acknowledged_at: Mapped[OptionalTimestamp]
    acknowledged_by: Mapped[str | None] = mapped_column(String(40))
    resolved_at: Mapped[OptionalTimestamp]
    resolved_by: Mapped[str | None] = mapped_column(String(40))
    #: rules that may fire only once per subject (e.g. a replayed session) set this
    dedupe_key: Mapped[str | None] = mapped_column(String(120), unique=True)


class NotMeToken(TenantScoped, Base):
    """The single-use "This wasn't me" link of a new-device email. Only a keyed hash of
    the link's secret is stored."""

    __tablename__ = "not_me_tokens"

    id: Mapped[PublicId] = mapped_column(default=lambda: new_id("nmt"))
    #: keyed hash of the secret in the link
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id"), index=True)
    #: the sign-in the email was about
    session_id: Mapped[str] = mapped_column(String(40))
    device_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[Timestamp]
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[OptionalTimestamp]


class AuditHead(Base):
    """The end of one tenant's audit chain (app.core.audit). Every event takes this row's
    lock in its own transaction, so concurrent writers of a tenant never fork the chain."""

    __tablename__ = "audit_heads"

    #: the tenant's id, or "-" for events that belong to no tenant
    chain: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: hash of the newest event
    last_hash: Mapped[str] = mapped_column(String(64))
    #: hash of the newest purged event: the first kept event links to it
    anchor_hash: Mapped[str] = mapped_column(String(64))
    #: random key of the chain's pseudonyms (HMAC), made with the head; sealed
    #: (app.sealing, the chain as context), so a dump alone cannot re-identify anyone
    pseudonym_key_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    #: events written to this chain so far (purged ones included)
    sealed: Mapped[int] = mapped_column(Integer, default=0)
    purged: Mapped[int] = mapped_column(Integer, default=0)


WEBHOOK_STATUSES = ("pending", "delivered", "failed")


class WebhookEndpoint(TenantScoped, Base):
    """A URL a tenant admin registered to receive some kinds of events (app.core.webhooks)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[PublicId] = mapped_column(default=lambda: new_id("whk"))
    url: Mapped[str] = mapped_column(String(2000))
    #: the event kinds it receives, e.g. ["session.created", "session.ended"]
    kinds: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: the signing secret, AES-GCM encrypted under a key derived from the secret key
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[Timestamp]
    created_by: Mapped[str | None] = mapped_column(String(40))


class WebhookDelivery(TenantScoped, Base):
    """One event on its way to one endpoint: queued with the event, sent by the worker."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at"),
    )

    id: Mapped[PublicId] = mapped_column(default=lambda: new_id("whd"))
    endpoint_id: Mapped[str] = mapped_column(String(40), ForeignKey("webhook_endpoints.id"))
    #: the audit event it carries (no foreign key: events are purged on their own clock)
    event_id: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(50))
    #: the exact JSON body, so every attempt sends the same bytes
    body: Mapped[str] = mapped_column(Text)
    #: pending (waiting for its next attempt), delivered, or failed (gave up)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[Timestamp]
    #: when the worker may try next; a worker claiming it moves this past its send timeout
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[OptionalTimestamp]
    delivered_at: Mapped[OptionalTimestamp]
    #: the HTTP status of the last answer, if any
    response_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(300))


MAIL_STATUSES = ("pending", "sent", "failed", "expired")


class OutboxMessage(TenantScoped, Base):
    """An email on its way out (app.outbox): written in the same transaction as what
    caused it, delivered afterwards by ``holdfast worker`` or a web process's sender."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_tenant_created", "tenant_id", "created_at"),
    )

    id: Mapped[PublicId] = mapped_column(default=lambda: new_id("msg"))
    #: what the mail is about, e.g. sign_in_code, new_device, session_evicted
    kind: Mapped[str] = mapped_column(String(40))
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    #: the body, AES-GCM sealed (it may hold a sign-in code or a link secret); wiped
    #: once the message is sent or given up
    body_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: the Message-ID header, the same on every attempt, so a copy delivered twice
    #: (the relay took it but its answer was lost) is recognisably the same message
    message_id: Mapped[str] = mapped_column(String(250))
    #: pending, sent, failed (the relay refused it for good, or it kept failing) or
    #: expired (it was only useful until give_up_at, e.g. a sign-in code)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[Timestamp]
    #: when a sender may try next; a sender claiming it moves this past its lease
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[OptionalTimestamp]
    sent_at: Mapped[OptionalTimestamp]
    #: not sent after this, ever (a sign-in code's expiry)
    give_up_at: Mapped[OptionalTimestamp]
    last_error: Mapped[str | None] = mapped_column(String(300))


class RateCounter(Base):
    """Hits on one rate-limit key in one fixed window (app.ratelimit), shared by every
    process and node that uses the database."""

    __tablename__ = "rate_counters"

    #: what is counted, e.g. "codes:email:sam@example.com" or "codes:net:203.0.113.0"
    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    #: the window's start, in Unix seconds (a multiple of its length)
    window_start: Mapped[int] = mapped_column(Integer, primary_key=True)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    #: when the row is of no more use (window end): ``holdfast purge`` deletes it after
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class WorkerHeartbeat(Base):
    """A running ``holdfast worker``: while one has reported lately, web processes leave
    the outbox to it (app.outbox)."""

    __tablename__ = "worker_heartbeats"

    #: host and process id
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CodeSlowdown(Base):
    """A run of wrong codes for one address, known or not (app.core.code_checks)."""

    __tablename__ = "code_slowdowns"

    #: keyed hash of the normalised address (no address is stored)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: wrong codes in a row (a right code deletes the row)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    #: codes for the address are not checked before this (growing delays)
    checks_after: Mapped[OptionalTimestamp]
    #: the last wrong code: a run left alone for a day is forgotten
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


# --- Holdfast as an OpenID Provider (app.core.oidc_clients, app.core.oidc_grants) ----------


class OidcClient(TenantScoped, Base):
    """An app a tenant admin registered to sign its people in through OpenID Connect.
    Its id is the ``client_id``; a confidential client's secret is stored only as a
    keyed hash (shown once). Redirect and post-logout URIs are matched exactly."""

    __tablename__ = "oidc_clients"

    id: Mapped[PublicId] = mapped_column(default=lambda: new_id("app"))
    name: Mapped[str] = mapped_column(String(100))
    #: keyed hash of the client secret (app.crypto.Hasher); None: a public client (PKCE)
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    #: the exact redirect URIs an authorization request may name
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: the exact URIs RP-initiated logout may return to
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: where logout tokens are POSTed when a session it signed in through ends
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[Timestamp]
    created_by: Mapped[str | None] = mapped_column(String(40))
    #: a removed app: no sign-ins, its tokens refused (rows kept for the audit trail)
    removed_at: Mapped[OptionalTimestamp]
    #: only the people listed in oidc_client_people may sign in to it (False: everyone
    #: of the tenant may)
    restricted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: the app's public keys (a JWK Set, registered inline): it authenticates with
    #: private_key_jwt and has no secret; None for the other apps
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    @property
    def is_public(self) -> bool:
        """A browser or native app: no secret, no keys, PKCE required."""
        return self.secret_hash is None and self.jwks is None

    @property
    def auth_method(self) -> str:
        """How the app authenticates at the token endpoint (its discovery name)."""
        if self.jwks is not None:
            return "private_key_jwt"
        return "none" if self.secret_hash is None else "client_secret_basic"


class OidcAssertionJti(TenantScoped, Base):
    """A ``jti`` of a private_key_jwt client assertion already used (single use, RFC 7523
    §3), kept until the assertion's ``exp``. Only a hash of the jti is stored."""

    __tablename__ = "oidc_assertion_jtis"

    client_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("oidc_clients.id"), primary_key=True
    )
    jti_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class OidcClientPerson(TenantScoped, Base):
    """A person chosen to use a restricted app (OidcClient.restricted). The list is kept
    while the app is open to everyone, so restricting it again brings the same people
    back."""

    __tablename__ = "oidc_client_people"

    client_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("oidc_clients.id"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id"), primary_key=True)
    added_at: Mapped[Timestamp]


class OidcCode(TenantScoped, Base):
    """An authorization code: single use, short-lived, tied to the Holdfast session that
    approved it. Only a keyed hash of the code is stored."""

    __tablename__ = "oidc_codes"

    id: Mapped[PublicId] = mapped_column(default=lambda: new_id("oac"))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(40), ForeignKey("oidc_clients.id"), index=True)
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id"))
    #: the Holdfast session the person was signed in with (the OP session, ``sid``)
    session_id: Mapped[str] = mapped_column(String(40), index=True)
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    scope: Mapped[str] = mapped_column(String(500), default="")
    nonce: Mapped[str | None] = mapped_column(String(500))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(10))
    #: when the person last proved who they are (the session's authenticated_at)
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime())
    #: the ID token's amr and acr, decided when the code was issued (app.core.oidc_grants)
    amr: Mapped[list[str]] = mapped_column(JSON, default=list)
    acr: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[Timestamp]
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: when it was exchanged; a second exchange revokes what the first issued
    used_at: Mapped[OptionalTimestamp]


class OidcGrant(TenantScoped, Base):
    """An app signed in through one Holdfast session: what the device page lists, what a
    back-channel logout is sent for, and what every token of the sign-in hangs on."""

    __tablename__ = "oidc_grants"

    id: Mapped[PublicId] = mapped_column(default=lambda: new_id("oag"))
    client_id: Mapped[str] = mapped_column(String(40), ForeignKey("oidc_clients.id"), index=True)
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id"))
    session_id: Mapped[str] = mapped_column(String(40), index=True)
    #: the code that started it (a replayed code ends the grant)
    code_id: Mapped[str | None] = mapped_column(String(40), index=True)
    scope: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[Timestamp]
    ended_at: Mapped[OptionalTimestamp]
    #: session_ended, revoked, code_replayed, signed_out (of this app), app_removed
    end_reason: Mapped[str | None] = mapped_column(String(30))


class OidcToken(TenantScoped, Base):
    """An access token and its refresh token (keyed hashes only). Every use checks the
    grant and the Holdfast session behind it, so they die with the session."""

    __tablename__ = "oidc_tokens"

    id: Mapped[PublicId] = mapped_column(default=lambda: new_id("oat"))
    grant_id: Mapped[str] = mapped_column(String(40), ForeignKey("oidc_grants.id"), index=True)
    access_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(500), default="")
    issued_at: Mapped[Timestamp]
    #: the access token's end; the refresh token lives as long as the session
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[OptionalTimestamp]
    #: the refresh token was exchanged for a new pair (using it again ends the grant)
    refreshed_at: Mapped[OptionalTimestamp]


class OidcLogoutDelivery(TenantScoped, Base):
    """A back-channel logout token on its way to an app (app.core.backchannel): queued in
    the transaction that ended the session, signed and POSTed by the worker, retried."""

    __tablename__ = "oidc_logout_deliveries"
    __table_args__ = (Index("ix_oidc_logout_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[PublicId] = mapped_column(default=lambda: new_id("bcl"))
    client_id: Mapped[str] = mapped_column(String(40), ForeignKey("oidc_clients.id"), index=True)
    #: the Holdfast session that ended (the token's ``sid``) and its person (``sub``)
    session_id: Mapped[str] = mapped_column(String(40), index=True)
    user_id: Mapped[str] = mapped_column(String(40))
    #: the token's ``jti``: the same on every attempt, so the app can drop repeats
    jti: Mapped[str] = mapped_column(String(40))
    #: pending, delivered or failed (gave up)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[Timestamp]
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[OptionalTimestamp]
    delivered_at: Mapped[OptionalTimestamp]
    response_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(300))
