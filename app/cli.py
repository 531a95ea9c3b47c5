"""The ``holdfast`` command: a Flask CLI group over the same core the web app uses.

Each command runs in one transaction and commits once at the end.
"""

from __future__ import annotations

import os
import random
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import Session

from app import __version__ as _release
from app import migrate, tokens
from app.core import accounts, audit, keys
from app.core.errors import HoldfastError
from app.core.events import Origin
from app.devices import describe
from app.models import Device, Event, SigningKey, Tenant, User, UserSession, new_id
from app.sealing import Unsealable


def services():  # type: ignore[no-untyped-def]
    return current_app.extensions["holdfast"]


@contextmanager
def transaction() -> Iterator[Session]:
    db = services().session(write=True)
    try:
        yield db
        db.commit()
    except Unsealable as error:  # a stored secret sealed with a key that is gone
        db.rollback()
        raise click.ClickException(str(error)) from error
    except BaseException:
        db.rollback()
        raise
    finally:
        db.close()


def fail(error: HoldfastError) -> None:
    raise click.ClickException(error.message)


# --- db ---------------------------------------------------------------------------------


@click.group("db")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0,
    metavar="SECONDS",
    help="First wait up to SECONDS for the database to answer (a container that "
    "starts beside its database server).",
)
@with_appcontext
def db_group(wait: float) -> None:
    """Database schema."""
    if wait:
        from app.serve import wait_for_database

        wait_for_database(current_app, wait)


@db_group.command("upgrade")
@with_appcontext
def db_upgrade() -> None:
    """Apply migrations and make sure a token signing key exists; say what was done.

    Then check that the stored secrets open under HOLDFAST_SECRET_KEY or a fallback:
    when some do not, say why and how to fix it, and exit with status 1."""
    from app import preflight

    done = migrate.upgrade(services().database.engine, sealer=services().sealer)
    head = migrate.head()
    if done.before is None:
        click.echo(
            f"Created a fresh schema: {len(done.applied)} migrations, now at revision {done.after}."
        )
    elif done.applied:
        count = len(done.applied)
        click.echo(
            f"Applied {count} migration{'s' if count != 1 else ''} "
            f"({', '.join(done.applied)}): revision {done.before} -> {done.after}."
        )
    elif not migrate.is_known(done.before):
        click.echo(
            f"The database is at revision {done.before}, newer than this release "
            f"({head}): nothing to do."
        )
    else:
        click.echo(f"Already up to date (revision {done.after}).")
    if ensure_signing_key():
        click.echo("Created the first token signing key.")
    problems = preflight.startup_problems(current_app)
    for problem in problems:
        click.echo(f"Error: {problem}", err=True)
    if problems:
        raise SystemExit(1)


@db_group.command("current")
@click.option("--check", is_flag=True, help="Exit with status 1 unless up to date.")
@with_appcontext
def db_current(check: bool) -> None:
    """The database's revision against this release's newest one."""
    stored = migrate.current(services().database.engine)
    head = migrate.head()
    if stored is None:
        pending = migrate.between(None, head)
        click.echo(
            f"No schema yet; this release is at revision {head} ({len(pending)} migrations): "
            "run `holdfast db upgrade`."
        )
    elif stored == head:
        click.echo(f"Revision {stored}: up to date with this release.")
    elif not migrate.is_known(stored):
        click.echo(
            f"Revision {stored}: newer than this release ({head}); a later release migrated it."
        )
    else:
        pending = migrate.between(stored, head)
        click.echo(
            f"Revision {stored}; this release is at {head}: {len(pending)} "
            f"migration{'s' if len(pending) != 1 else ''} to apply ({', '.join(pending)}). "
            "Run `holdfast db upgrade`."
        )
    if check and stored != head:
        raise SystemExit(1)


@db_group.command("revision")
@click.option("-m", "--message", required=True)
@with_appcontext
def db_revision(message: str) -> None:
    """Write a new migration from the difference between the models and the database."""
    migrate.revision(services().database.engine, message)


def ensure_signing_key() -> bool:
    """Make the first token signing key if there is none; whether it made one."""
    with transaction() as db:
        if db.scalar(select(func.count()).select_from(SigningKey)) == 0:
            db.add(services().keys.new_key(services().clock.now()))
            return True
    return False


# --- tenants and people ---------------------------------------------------------------------


@click.group("tenant")
def tenant_group() -> None:
    """Tenants (organisations)."""


@tenant_group.command("create")
@click.argument("slug")
@click.option("--name", required=True, help="Display name of the tenant.")
@click.option("--admin", "admin_email", required=True, help="Email of its first admin.")
@with_appcontext
def tenant_create(slug: str, name: str, admin_email: str) -> None:
    """Create a tenant and its first admin."""
    now = services().clock.now()
    try:
        with transaction() as db:
            tenant = accounts.create_tenant(db, slug, name, now=now)
            admin = accounts.add_user(db, tenant, admin_email, role="admin", now=now)
    except HoldfastError as error:
        fail(error)
    click.echo(f"Created tenant {tenant.slug} ({tenant.id}) with admin {admin.email}.")


@click.group("user")
def user_group() -> None:
    """People."""


@user_group.command("add")
@click.argument("email")
@click.option("--tenant", "slug", required=True, help="Slug of the tenant.")
@click.option("--admin", is_flag=True, help="Make the person a tenant admin.")
@with_appcontext
def user_add(email: str, slug: str, admin: bool) -> None:
    """Add a person to a tenant."""
    now = services().clock.now()
    try:
        with transaction() as db:
            tenant = accounts.tenant_by_slug(db, slug)
            if tenant is None:
                raise click.ClickException(f"No tenant called {slug!r}.")
            user = accounts.add_user(
                db, tenant, email, role="admin" if admin else "member", now=now
            )
    except HoldfastError as error:
        fail(error)
    click.echo(f"Added {user.email} ({user.role}) to {slug}.")


# --- keys ---------------------------------------------------------------------------------


@click.group("keys")
def keys_group() -> None:
    """Token signing keys."""


@keys_group.command("rotate")
@click.option(
    "--end-sessions", is_flag=True, help="Also end every session now (everyone signs in again)."
)
@click.option(
    "--leaked",
    is_flag=True,
    help="The signing key got out: sign with the new key and stop accepting the old one "
    "at once, and end every session (verifiers refuse new tokens until they refetch the "
    "JWKS).",
)
@with_appcontext
def keys_rotate(end_sessions: bool, leaked: bool) -> None:
    """Publish a new signing key now; it signs once every node and verifier has it.

    The old key keeps verifying until the tokens it signed expire (docs/api.md has the
    timeline)."""
    ring = services().keys
    delay = tokens.publication_delay(ring.refresh_seconds, current_app.config["JWKS_MAX_AGE"])
    with transaction() as db:
        rotation = keys.rotate_signing_key(
            db,
            ring,
            now=services().clock.now(),
            publish_for=delay,
            end_sessions=end_sessions,
            leaked=leaked,
        )
    ring.reload()
    ended = f" Ended {rotation.sessions_ended} sessions." if end_sessions or leaked else ""
    click.echo(
        f"New signing key {rotation.kid}, in the JWKS now, signing from "
        f"{rotation.signs_from:%Y-%m-%d %H:%M:%S} UTC.{ended}"
    )


# --- demo ---------------------------------------------------------------------------------

DEMO_ADMIN = "admin@demo.holdfast.test"
DEMO_MEMBER = "sam@demo.holdfast.test"


@click.command("demo")
@click.option(
    "--users",
    type=click.IntRange(min=0),
    default=None,
    help="Make sure the demo tenant holds at least this many people (bulk insert).",
)
@click.option(
    "--sessions",
    type=click.IntRange(min=0),
    default=None,
    help="Make sure the demo tenant holds at least this many sessions, live and "
    "ended, spread over 90 days (bulk insert).",
)
@click.option(
    "--seed",
    type=int,
    default=1,
    show_default=True,
    help="Random seed for the bulk data, so two runs make the same shapes.",
)
@with_appcontext
def demo(users: int | None, sessions: int | None, seed: int) -> None:
    """Seed a demo tenant with an admin and a member (safe to run again).

    With --users and --sessions, also fill it with made-up people, devices and sessions
    for trying the admin console at scale (1,000,000 sessions take about a minute)."""
    now = services().clock.now()
    with transaction() as db:
        tenant = accounts.tenant_by_slug(db, "demo")
        if tenant is None:
            tenant = accounts.create_tenant(db, "demo", "Demo Clinic", now=now)
        for email, role in ((DEMO_ADMIN, "admin"), (DEMO_MEMBER, "member")):
            if accounts.account_in(db, tenant.id, email) is None:
                accounts.add_user(db, tenant, email, role=role, now=now)
        tenant_id = tenant.id
    if users or sessions:
        added = seed_bulk(
            services().database.engine,
            tenant_id,
            now=now,
            users=users or 0,
            sessions=sessions or 0,
            seed=seed,
            echo=click.echo,
        )
        with transaction() as db:  # bulk rows bypassed record(): chain them onto the trail
            audit.seal_unsealed(db, audit.chain_of(tenant_id))
        click.echo(
            f"Added {added.users} people, {added.devices} devices and "
            f"{added.sessions} sessions in {added.seconds:.1f} s."
        )
    with transaction() as db:
        people = db.scalar(
            select(func.count()).select_from(User).where(User.tenant_id == tenant_id)
        )
    click.echo(f"Demo tenant 'demo' ({people} people). Sign in as:")
    click.echo(f"  admin:  {DEMO_ADMIN}")
    click.echo(f"  member: {DEMO_MEMBER}")
    click.echo("The sign-in code is printed in this terminal (console mail).")


# The bulk demo data: made-up people, devices and sessions, written with Core executemany
# in batches (no ORM objects, no per-row events), so a million sessions take about a minute.

#: the browsers and apps the demo people use, with how common each is (kind, OS and
#: browser come from the same parser real sign-ins go through)
DEMO_AGENTS = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36": 26,
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36": 14,
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0": 9,
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15": 7,
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0": 5,
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0": 4,
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1": 16,
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Mobile Safari/537.36": 11,
    "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36": 3,
    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1": 4,
    "holdfast-sync/2.3": 1,
}
DEMO_PLACES = (
    "Berlin, DE",
    "London, GB",
    "Lisbon, PT",
    "Toronto, CA",
    "Austin, US",
    "Sydney, AU",
    "Nairobi, KE",
    None,
    None,
    None,
)
DEMO_NETWORKS = ("10.20.", "192.0.2.", "198.51.100.", "203.0.113.", "172.16.")
DEMO_NAMES = (
    "Ada",
    "Ben",
    "Chen",
    "Dana",
    "Eli",
    "Farah",
    "Gus",
    "Hana",
    "Ivo",
    "Jun",
    "Kemi",
    "Lena",
    "Mo",
    "Nia",
    "Omar",
    "Pia",
    "Quinn",
    "Rosa",
    "Sami",
    "Tove",
)
#: (weight, end reason) of the ended demo sessions
DEMO_ENDINGS = (
    (45, "idle_expired"),
    (25, "logout"),
    (15, "lifetime_expired"),
    (7, "revoked_by_user"),
    (5, "limit_evicted"),
    (3, "revoked_by_admin"),
)
DEMO_HISTORY_DAYS = 90
#: share of the demo sessions that are live now
DEMO_LIVE_SHARE = 0.02
BATCH = 10_000


@dataclass
class Seeded:
    users: int = 0
    devices: int = 0
    sessions: int = 0
    seconds: float = 0.0


def seed_bulk(
    engine: Engine,
    tenant_id: str,
    *,
    now: datetime,
    users: int,
    sessions: int,
    seed: int = 1,
    echo: Callable[[str], Any] = print,
) -> Seeded:
    """Make sure tenant ``tenant_id`` holds at least ``users`` people and ``sessions``
    sessions; add only what is missing, so running it again adds nothing. The demo admin
    gets no made-up sessions (their own device list stays theirs). Commits per batch: an
    interrupted run resumes where it stopped."""
    started = time.perf_counter()
    rng = random.Random(seed)  # noqa: S311 (made-up data, not secrets)
    writer = engine.execution_options(holdfast_write=True)
    done = Seeded()
    with writer.connect() as conn:
        if engine.dialect.name == "sqlite":
            # A big page cache keeps the indexes' hot pages in memory while rows pour in.
            conn.exec_driver_sql("PRAGMA cache_size=-262144")
        have = conn.scalar(
            select(func.count()).select_from(User).where(User.tenant_id == tenant_id)
        )
        for first in range(have or 0, users, BATCH):
            rows = [
                _demo_person(rng, tenant_id, number, now)
                for number in range(first, min(users, first + BATCH))
            ]
            conn.execute(insert(User), rows)
            conn.commit()
            done.users += len(rows)
        people = (
            conn.execute(
                select(User.id).where(User.tenant_id == tenant_id, User.email != DEMO_ADMIN)
            )
            .scalars()
            .all()
        )
        with_device = set(
            conn.execute(
                select(Device.user_id).where(Device.tenant_id == tenant_id).distinct()
            ).scalars()
        )
        bare = [person for person in people if person not in with_device]
        for first in range(0, len(bare), BATCH):
            rows = [
                device
                for person in bare[first : first + BATCH]
                for device in _demo_devices(rng, tenant_id, person, now)
            ]
            conn.execute(insert(Device), rows)
            conn.commit()
            done.devices += len(rows)
        if done.users or done.devices:
            echo(f"  {done.users} people, {done.devices} devices")
        have = (
            conn.scalar(
                select(func.count())
                .select_from(UserSession)
                .where(UserSession.tenant_id == tenant_id)
            )
            or 0
        )
        missing = max(0, sessions - have)
        if missing and people:
            # Each device's sessions carry the user agent that device was recognised from.
            by_look = {astuple(describe(agent)): agent for agent in DEMO_AGENTS}
            devices: dict[str, list[tuple[str, str]]] = {}
            for user_id, device_id, kind, os_name, browser in conn.execute(
                select(Device.user_id, Device.id, Device.kind, Device.os, Device.browser).where(
                    Device.tenant_id == tenant_id
                )
            ):
                agent = by_look.get((kind, os_name, browser), "")
                devices.setdefault(user_id, []).append((device_id, agent))
            owners = [person for person in people if person in devices]
            for first in range(0, missing, BATCH):
                rows = []
                for _ in range(min(BATCH, missing - first)):
                    person = rng.choice(owners)
                    device_id, agent = rng.choice(devices[person])
                    rows.append(_demo_session(rng, tenant_id, person, device_id, agent, now))
                conn.execute(insert(UserSession), rows)
                conn.commit()
                done.sessions += len(rows)
                if done.sessions % 100_000 < BATCH:
                    echo(f"  {done.sessions} of {missing} sessions")
            failed = [
                _demo_failed_code(rng, tenant_id, rng.choice(owners), now)
                for _ in range(max(1, missing // 200))
            ]
            for first in range(0, len(failed), BATCH):
                conn.execute(insert(Event), failed[first : first + BATCH])
                conn.commit()
    done.seconds = time.perf_counter() - started
    return done


def _demo_person(rng: random.Random, tenant_id: str, number: int, now: datetime) -> dict:
    first, last = rng.choice(DEMO_NAMES), rng.choice(DEMO_NAMES)
    return {
        "id": new_id("usr"),
        "tenant_id": tenant_id,
        "role": "member",
        "disabled": False,
        "email": f"person{number:06d}@demo.holdfast.test",
        "name": f"{first} {last}son",
        "created_at": now - timedelta(days=DEMO_HISTORY_DAYS + rng.random() * 300),
        "last_sign_in_at": now - timedelta(hours=rng.random() * 24 * 30),
    }


def _demo_devices(rng: random.Random, tenant_id: str, user_id: str, now: datetime) -> list[dict]:
    agents = rng.choices(list(DEMO_AGENTS), list(DEMO_AGENTS.values()), k=rng.choice((1, 2, 3)))
    rows = []
    for number, agent in enumerate(agents):
        info = describe(agent)
        seen = now - timedelta(days=rng.random() * DEMO_HISTORY_DAYS)
        trusted = rng.random() < 0.3
        rows.append(
            {
                "id": new_id("dev"),
                "tenant_id": tenant_id,
                "user_id": user_id,
                "cookie_hash": secrets.token_hex(32),
                "name": f"Work {info.kind} {number + 1}" if rng.random() < 0.2 else None,
                "kind": info.kind,
                "os": info.os,
                "browser": info.browser,
                "first_seen_at": seen - timedelta(days=30),
                "last_seen_at": seen,
                "trusted_until": now + timedelta(days=rng.random() * 30) if trusted else None,
            }
        )
    return rows


def _demo_moment(rng: random.Random, now: datetime, within: timedelta) -> datetime:
    """A moment in the last ``within``, busier on weekdays and in working hours (UTC)."""
    while True:
        moment = now - within * rng.random()
        busy = (0.25 if moment.weekday() >= 5 else 1.0) * (1.0 if 7 <= moment.hour < 19 else 0.2)
        if rng.random() < busy:
            return moment


def _demo_session(
    rng: random.Random, tenant_id: str, user_id: str, device_id: str, agent: str, now: datetime
) -> dict:
    network = rng.choice(DEMO_NETWORKS)
    row = {
        "id": new_id("sess"),
        "tenant_id": tenant_id,
        "user_id": user_id,
        "device_id": device_id,
        "extend_on_activity": True,
        "user_agent": agent,
        "ip": f"{network}{rng.randrange(1, 255)}"
        + ("" if network.count(".") == 3 else f".{rng.randrange(1, 255)}"),
        "location": rng.choice(DEMO_PLACES),
    }
    if rng.random() < DEMO_LIVE_SHARE:
        created = now - timedelta(hours=rng.random() * 11)
        seen = max(created, now - timedelta(minutes=rng.random() * 25))
        row.update(
            created_at=created,
            authenticated_at=created,
            last_seen_at=seen,
            idle_deadline=seen + timedelta(minutes=30),
            absolute_deadline=created + timedelta(hours=12),
            ended_at=None,
            end_reason=None,
        )
        return row
    created = _demo_moment(rng, now, timedelta(days=DEMO_HISTORY_DAYS))
    reason = rng.choices([r for _w, r in DEMO_ENDINGS], [w for w, _r in DEMO_ENDINGS])[0]
    if reason == "lifetime_expired":
        length = timedelta(hours=12)
    else:
        # Mostly minutes to a few hours, with a long tail of days on trusted devices.
        length = timedelta(minutes=min(60 * 24 * 20, rng.lognormvariate(3.6, 1.4)))
    ended = min(created + length, now - timedelta(minutes=1))
    seen = ended - timedelta(minutes=30) if reason == "idle_expired" else ended
    seen = max(created, seen)
    row.update(
        created_at=created,
        authenticated_at=created,
        last_seen_at=seen,
        idle_deadline=seen + timedelta(minutes=30),
        absolute_deadline=created + max(length, timedelta(hours=12)),
        ended_at=ended,
        end_reason=reason,
    )
    return row


def _demo_failed_code(rng: random.Random, tenant_id: str, user_id: str, now: datetime) -> dict:
    return {
        "tenant_id": tenant_id,
        "kind": "code.failed",
        "subject_id": user_id,
        "at": _demo_moment(rng, now, timedelta(days=30)),
        "actor_id": None,
        "session_id": None,
        "ip": f"203.0.113.{rng.randrange(1, 255)}",
        "details": {"challenge_id": new_id("chl"), "attempts": rng.randrange(1, 6)},
    }


# --- audit, retention, webhooks (app.core.audit, app.core.retention, app.worker) ---------


@click.group("audit")
def audit_group() -> None:
    """The tamper-evident audit trail."""


@audit_group.command("verify")
@click.option("--tenant", "slug", default=None, help="Check only this tenant's chain.")
@with_appcontext
def audit_verify(slug: str | None) -> None:
    """Walk each tenant's audit chain and report the first broken link (exit status 1)."""
    from app.core import audit

    with services().session() as db:
        tenant_id = None
        if slug is not None:
            tenant = accounts.tenant_by_slug(db, slug)
            if tenant is None:
                raise click.ClickException(f"No tenant called {slug!r}.")
            tenant_id = tenant.id
        names = {row.id: row.slug for row in db.execute(select(Tenant.id, Tenant.slug))}
        broken = 0
        for chain in audit.chains(db, tenant_id):
            verdict = audit.verify(db, chain)
            label = names.get(chain, "(no tenant)" if chain == audit.NO_TENANT else chain)
            if verdict.intact:
                click.echo(
                    f"{label}: {verdict.checked} events verified"
                    + (f" ({verdict.purged} purged before them)" if verdict.purged else "")
                    + (f", head {verdict.head_hash[:16]}" if verdict.head_hash else "")
                )
            else:
                broken += 1
                click.echo(
                    f"{label}: BROKEN after {verdict.checked} good events: {verdict.problem}",
                    err=True,
                )
    if broken:
        raise SystemExit(1)


@click.command("purge")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=100_000),
    default=1000,
    show_default=True,
    help="Rows per transaction.",
)
@with_appcontext
def purge(batch_size: int) -> None:
    """Apply every tenant's retention periods: delete old sessions, devices, events and
    codes, anonymise old IP addresses. Safe to run from cron, idempotent."""
    from app.core import retention

    done = retention.purge(
        lambda: services().session(write=True), now=services().clock.now(), batch_size=batch_size
    )
    click.echo(
        f"Purged {done.sessions} sessions, {done.devices} devices, {done.events} events, "
        f"{done.challenges} sign-in codes, {done.deliveries} webhook deliveries, "
        f"{done.mail} mail messages, {done.rate_counters} rate-limit counters; "
        f"anonymised {done.session_ips + done.event_ips + done.alert_ips} IP addresses "
        f"({len(done.tenants) - 1} tenants)."
    )


@click.command("worker")
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds between polls when idle.",
)
@with_appcontext
def worker(once: bool, interval: float) -> None:
    """Send queued mail and webhook deliveries (retrying failures with backoff)."""
    from app import outbox
    from app import worker as runner

    private_ok = runner.allow_private(current_app.config)
    if once:
        mailed = outbox.deliver_due(services())
        sent = runner.deliver_due(services(), private_ok=private_ok)
        click.echo(f"Attempted {mailed} mail deliveries and {sent} webhook deliveries.")
        return
    runner.run(services(), private_ok=private_ok, interval=interval)


# --- the operator's commands: tenants and people, secrets, backups --------------------------


@tenant_group.command("list")
@with_appcontext
def tenant_list() -> None:
    """Every tenant: slug, name, people (admins), created, id."""
    with services().session() as db:
        people = dict(
            db.execute(select(User.tenant_id, func.count()).group_by(User.tenant_id)).all()
        )
        admins = dict(
            db.execute(
                select(User.tenant_id, func.count())
                .where(User.role == "admin", User.disabled.is_(False))
                .group_by(User.tenant_id)
            ).all()
        )
        rows = [
            (
                tenant.slug,
                tenant.name,
                _people(people.get(tenant.id, 0), admins.get(tenant.id, 0)),
                f"{tenant.created_at:%Y-%m-%d}",
                tenant.id,
            )
            for tenant in db.scalars(select(Tenant).order_by(Tenant.slug))
        ]
    if not rows:
        click.echo("No tenants yet: `holdfast tenant create SLUG --name NAME --admin EMAIL`.")
        return
    _table(("SLUG", "NAME", "PEOPLE", "CREATED", "ID"), rows)


@user_group.command("list")
@click.option("--tenant", "slug", required=True, help="Slug of the tenant.")
@with_appcontext
def user_list(slug: str) -> None:
    """The tenant's people: email, role, status, last sign-in, id."""
    with services().session() as db:
        tenant = accounts.tenant_by_slug(db, slug)
        if tenant is None:
            raise click.ClickException(f"No tenant called {slug!r}: see `holdfast tenant list`.")
        rows = [
            (
                user.email,
                user.role,
                "disabled" if user.disabled else "active",
                f"{user.last_sign_in_at:%Y-%m-%d %H:%M}" if user.last_sign_in_at else "never",
                user.id,
            )
            for user in db.scalars(
                select(User).where(User.tenant_id == tenant.id).order_by(User.email)
            )
        ]
    if not rows:
        click.echo(f"{slug} has nobody yet.")
        return
    _table(("EMAIL", "ROLE", "STATUS", "LAST SIGN-IN (UTC)", "ID"), rows)


@user_group.command("disable")
@click.argument("email")
@click.option(
    "--tenant",
    "slug",
    default=None,
    help="The tenant whose account it is (needed when the address has several).",
)
@with_appcontext
def user_disable(email: str, slug: str | None) -> None:
    """Disable a person and end their sessions at once (as an admin does in the console)."""
    from app.core import people

    with _as_operator(email, slug) as (db, user, operator):
        was_disabled = user.disabled
        ended = people.disable(db, operator, user.id, now=services().clock.now(), origin=CLI)
        label = f"{user.email} ({_slug(db, user)})"
    if was_disabled:
        click.echo(f"{label} was disabled already.")
    else:
        click.echo(f"Disabled {label}; ended {len(ended)} session{'s' if len(ended) != 1 else ''}.")


@user_group.command("enable")
@click.argument("email")
@click.option(
    "--tenant",
    "slug",
    default=None,
    help="The tenant whose account it is (needed when the address has several).",
)
@with_appcontext
def user_enable(email: str, slug: str | None) -> None:
    """Let a disabled person sign in again (their old sessions stay ended)."""
    from app.core import people

    with _as_operator(email, slug) as (db, user, operator):
        was_disabled = user.disabled
        people.enable(db, operator, user.id, now=services().clock.now(), origin=CLI)
        label = f"{user.email} ({_slug(db, user)})"
    click.echo(f"Enabled {label}." if was_disabled else f"{label} was enabled already.")


@user_group.command("role")
@click.argument("email")
@click.argument("role", type=click.Choice(["member", "admin"]))
@click.option(
    "--tenant",
    "slug",
    default=None,
    help="The tenant whose account it is (needed when the address has several).",
)
@with_appcontext
def user_role(email: str, role: str, slug: str | None) -> None:
    """Make a person a member or an admin of their tenant."""
    from app.core import people

    with _as_operator(email, slug) as (db, user, operator):
        old = user.role
        people.set_role(db, operator, user.id, role, now=services().clock.now(), origin=CLI)
        label = f"{user.email} ({_slug(db, user)})"
    click.echo(
        f"{label} is now {role} (was {old})." if old != role else f"{label} is {role} already."
    )


#: where the operator's changes come from, in their events
CLI = Origin(ip="", user_agent="holdfast cli")


@contextmanager
def _as_operator(email: str, slug: str | None) -> Iterator[tuple[Session, User, Any]]:
    """A write transaction scoped to the tenant of the account with ``email`` (in tenant
    ``slug``, which must be given when the address has accounts in several), that
    account, and the operator acting on them. Refusals (unknown email or tenant, an
    address in several tenants without one named, the core's rules) become a clear
    message and exit status 1."""
    from app.core.access import Operator
    from app.db import scope_to_tenant

    try:
        with transaction() as db:
            try:
                address = accounts.normalise_email(email)
            except HoldfastError:
                address = email.strip().lower()
            found = accounts.accounts_of(db, address, enabled_only=False)
            if slug is not None:
                found = [user for user in found if _slug(db, user) == slug]
            if not found:
                where = f" in {slug!r}" if slug else ""
                raise click.ClickException(
                    f"Nobody has the email {email!r}{where}: "
                    "see `holdfast user list --tenant SLUG`."
                )
            if len(found) > 1:
                tenants = ", ".join(_slug(db, user) for user in found)
                raise click.ClickException(
                    f"{email} has an account in several tenants ({tenants}): "
                    "say which with --tenant SLUG."
                )
            [user] = found
            scope_to_tenant(db, user.tenant_id)
            yield db, user, Operator()
    except HoldfastError as error:
        fail(error)


def _people(people: int, admins: int) -> str:
    return f"{people} ({admins} admin{'s' if admins != 1 else ''})"


def _slug(db: Session, user: User) -> str:
    return db.get_one(Tenant, user.tenant_id).slug


def _table(header: tuple[str, ...], rows: Sequence[tuple[Any, ...]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


@click.group("secrets")
def secrets_group() -> None:
    """Stored secrets and the secret key (HOLDFAST_SECRET_KEY and its fallbacks)."""


@secrets_group.command("check")
@with_appcontext
def secrets_check() -> None:
    """Check that every stored secret opens; exit status 1 (saying why) when one does not."""
    from app import preflight
    from app.core import resealing

    problems = preflight.startup_problems(current_app)
    for problem in problems:
        click.echo(f"Error: {problem}", err=True)
    if problems:
        raise SystemExit(1)
    with services().session() as db:
        tally = resealing.check(db, services().sealer)
    current = sum(tally.current.values())
    other = sum(tally.resealed.values())
    click.echo(
        f"All {current + other} stored secrets open. {current} are sealed under the "
        f"current key (key id {services().sealer.key_id})"
        + (
            f", {other} under a fallback key or in the older form: run `holdfast secrets rotate`."
            if other
            else "."
        )
    )


@secrets_group.command("rotate")
@with_appcontext
def secrets_rotate() -> None:
    """Re-seal every stored secret under the current HOLDFAST_SECRET_KEY (run after
    moving the old key to HOLDFAST_SECRET_KEY_FALLBACKS; safe to run again)."""
    from app import preflight
    from app.core import resealing

    with transaction() as db:
        tally = resealing.reseal(db, services().sealer, now=services().clock.now())
    services().keys.reload()
    done = ", ".join(
        f"{tally.resealed[kind]} {preflight.NAMES[kind][tally.resealed[kind] != 1]}"
        for kind in resealing.KINDS
    )
    already = sum(tally.current.values())
    click.echo(
        f"Re-sealed under key id {services().sealer.key_id}: {done} "
        f"({already} were under it already)."
    )
    if tally.problems:
        for problem in preflight.startup_problems(current_app):
            click.echo(f"Error: {problem}", err=True)
        raise SystemExit(1)


@click.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@with_appcontext
def backup(path: Path) -> None:
    """Copy the SQLite database to PATH, consistently, while the app runs (never
    overwrites). On PostgreSQL, print the pg_dump line to use instead."""
    from app import backup as backups

    database = services().database
    if not database.is_sqlite:
        raise click.ClickException(
            "holdfast backup copies SQLite databases. On PostgreSQL use pg_dump (custom "
            "format, restore with pg_restore; the password comes from PGPASSWORD or "
            "~/.pgpass):\n  " + backups.pg_dump_command(database.url, path)
        )
    source = Path(database.engine.url.database or "")
    try:
        copy = backups.backup_sqlite(
            source, path.absolute(), busy_timeout=float(current_app.config["SQLITE_BUSY_TIMEOUT"])
        )
    except backups.BackupError as error:
        raise click.ClickException(str(error)) from error
    revision = migrate.current(database.engine)
    click.echo(f"Backed up {source} to {copy.path} ({copy.size} bytes, revision {revision}).")


def register(app: Flask) -> None:
    from app.serve import serve

    for command in (
        db_group,
        tenant_group,
        user_group,
        keys_group,
        demo,
        audit_group,
        purge,
        worker,
        secrets_group,
        backup,
        serve,
    ):
        app.cli.add_command(command)


def _create_app() -> Flask:
    from app import create_app

    return create_app()


cli = FlaskGroup(
    name="holdfast",
    create_app=_create_app,
    add_version_option=False,
    load_dotenv=False,
    help="Holdfast: sessions and devices.",
)
# `holdfast --version`: this release (app.__version__), answered without making the app.
click.version_option(_release, prog_name="holdfast", message="%(prog)s %(version)s")(cli)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        # The development server speaks plain HTTP: Secure cookies would never come back.
        os.environ.setdefault("HOLDFAST_COOKIE_SECURE", "false")
        os.environ.setdefault("HOLDFAST_LOG_FORMAT", "text")
        # Static files read afresh on each request, so an edited one shows on reload.
        os.environ.setdefault("HOLDFAST_STATIC_AUTOREFRESH", "true")
    cli.main(prog_name="holdfast")
