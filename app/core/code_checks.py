"""What checking a code may cost, and what wrong codes lead to: the rules every place that
checks a code runs (the emailed code at sign-in and at a fresh sign-in, the app's code
or a recovery code at a second step, the code that confirms a new app).

* **Budgets.** Each check draws on the client network's and the address's check budgets
  (app.ratelimit: ``HOLDFAST_RATELIMIT_CHECKS``, ``_CHECKS_PER_IP``), counted like the
  code requests' budgets wherever every process sees them, before the code is looked at.
* **The slow-down after many wrong codes**, kept per normalised address (a keyed hash of
  it), whether or not the address has an account: from :data:`SLOW_AFTER` wrong codes in
  a row on, each wrong code refuses checks for that address for a growing delay, and
  the answer is the same for a known and an unknown address, so it tells nobody which
  addresses have accounts. A caller holding a trusted device of one of the address's
  accounts is never slowed (the person keeps a way in); a right code ends the
  slow-down. A count left alone for :data:`FORGET_AFTER` is forgotten (``holdfast
  purge``).
* **Alerts** for the tenants whose accounts the codes were guessed for: a burst of
  wrong codes (medium) and the start of a slow-down (high, emailed to admins).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.core.alerts import raise_alert
from app.core.budgets import CodeBudgets
from app.core.errors import N_plural, RateLimited
from app.core.events import Origin
from app.crypto import Hasher
from app.models import Alert, CodeSlowdown, Device, Event, User

BURST_COUNT = 10
BURST_WINDOW = timedelta(minutes=15)
SLOW_AFTER = 100
SLOW_FIRST_DELAY = timedelta(seconds=30)
SLOW_MAX_DELAY = timedelta(hours=1)
#: a run of wrong codes with no new one for this long is forgotten
FORGET_AFTER = timedelta(days=1)
#: the longest device cookie (or deviceId) taken as one
MAX_DEVICE_COOKIE = 200


def _key(hasher: Hasher, address: str) -> str:
    return hasher.hash("code slow-down", address)


def before_check(
    db: Session,
    hasher: Hasher,
    budgets: CodeBudgets,
    *,
    address: str,
    accounts: Sequence[User],
    device_cookie: str | None,
    origin: Origin,
    now: datetime,
) -> None:
    """Let a code for ``address`` be checked, or raise RateLimited (``retry_after`` in
    its details): a check budget is spent, or the address is slowed down and the caller
    holds no trusted device of ``accounts`` (the address's enabled accounts)."""
    budgets.spend_check(db, address, origin.ip, now=now)
    row = db.get(CodeSlowdown, _key(hasher, address))
    if row is None or row.checks_after is None or now >= row.checks_after:
        return
    if any(_holds_trusted_device(db, hasher, user, device_cookie, now) for user in accounts):
        return
    wait = math.ceil((row.checks_after - now).total_seconds())
    if wait < 120:
        one, other = N_plural(
            "Too many wrong codes were entered for this address. Try again in %(num)s second.",
            "Too many wrong codes were entered for this address. Try again in %(num)s seconds.",
        )
        count = wait
    else:
        one, other = N_plural(
            "Too many wrong codes were entered for this address. Try again in %(num)s minute.",
            "Too many wrong codes were entered for this address. Try again in %(num)s minutes.",
        )
        count = math.ceil(wait / 60)
    raise RateLimited(one, plural=other, count=count, retry_after=wait)


def _holds_trusted_device(
    db: Session, hasher: Hasher, user: User, raw_cookie: str | None, now: datetime
) -> bool:
    if not raw_cookie or not isinstance(raw_cookie, str) or len(raw_cookie) > MAX_DEVICE_COOKIE:
        return False
    device = db.scalars(
        select(Device)
        .where(
            Device.user_id == user.id,
            Device.cookie_hash.in_(hasher.candidates("device", user.id, raw_cookie)),
        )
        .execution_options(all_tenants=True)
    ).one_or_none()
    return device is not None and device.is_trusted(now)


def wrong_code(
    db: Session,
    hasher: Hasher,
    *,
    address: str,
    accounts: Sequence[User],
    now: datetime,
    origin: Origin,
) -> None:
    """Count a wrong code for ``address`` (called once its ``code.failed`` or
    ``mfa.failed`` events are flushed) and apply the rules of the module docstring."""
    key = _key(hasher, address)
    insert = sqlite_insert if db.get_bind().dialect.name == "sqlite" else postgresql_insert
    failures = int(
        db.execute(
            insert(CodeSlowdown)
            .values(key=key, failures=1, updated_at=now)
            .on_conflict_do_update(
                index_elements=[CodeSlowdown.key],
                set_={"failures": CodeSlowdown.failures + 1, "updated_at": now},
            )
            .returning(CodeSlowdown.failures)
        ).scalar_one()
    )
    if failures >= SLOW_AFTER:
        delay = min(SLOW_FIRST_DELAY * 2 ** (failures - SLOW_AFTER), SLOW_MAX_DELAY)
        db.execute(
            update(CodeSlowdown).where(CodeSlowdown.key == key).values(checks_after=now + delay)
        )
    for user in accounts:
        common: dict[str, Any] = {
            "tenant_id": user.tenant_id,
            "now": now,
            "user_id": user.id,
            "origin": origin,
        }
        if failures == SLOW_AFTER:
            raise_alert(
                db,
                "code_sign_in_slowed",
                "high",
                summary=(
                    f"{SLOW_AFTER} wrong sign-in codes in a row for {user.email}. Code "
                    "sign-in for this address now waits longer after each wrong code; its "
                    "trusted devices can still sign in."
                ),
                failures=failures,
                **common,
            )
        recent = (
            db.scalar(
                select(func.count())
                .select_from(Event)
                .where(
                    Event.subject_id == user.id,
                    Event.kind.in_(("code.failed", "mfa.failed")),
                    Event.at > now - BURST_WINDOW,
                )
            )
            or 0
        )
        if recent >= BURST_COUNT and not _recent_alert(db, user.id, now - BURST_WINDOW):
            raise_alert(
                db,
                "code_burst",
                "medium",
                summary=(
                    f"{recent} wrong sign-in codes for {user.email} within "
                    f"{int(BURST_WINDOW.total_seconds() // 60)} minutes."
                ),
                failures=recent,
                **common,
            )


def _recent_alert(db: Session, user_id: str, since: datetime) -> bool:
    return (
        db.scalar(
            select(Alert.id)
            .where(Alert.user_id == user_id, Alert.kind == "code_burst", Alert.created_at > since)
            .limit(1)
            .execution_options(all_tenants=True)
        )
        is not None
    )


def right_code(db: Session, hasher: Hasher, address: str) -> None:
    """The address's run of wrong codes is over."""
    db.execute(delete(CodeSlowdown).where(CodeSlowdown.key == _key(hasher, address)))


def forget_old(db: Session, now: datetime, limit: int) -> int:
    """Delete runs of wrong codes left alone for FORGET_AFTER (``holdfast purge``)."""
    keys = list(
        db.scalars(
            select(CodeSlowdown.key)
            .where(CodeSlowdown.updated_at < now - FORGET_AFTER)
            .limit(limit)
        )
    )
    if keys:
        db.execute(delete(CodeSlowdown).where(CodeSlowdown.key.in_(keys)))
    return len(keys)


def check_for_person(
    db: Session,
    hasher: Hasher,
    budgets: CodeBudgets,
    user: User,
    device_cookie: str | None,
    *,
    origin: Origin,
    now: datetime,
) -> None:
    """The check rules of :func:`before_check` for a code of ``user``'s (their own address,
    their own trusted devices)."""
    before_check(
        db,
        hasher,
        budgets,
        address=user.email,
        accounts=[user],
        device_cookie=device_cookie,
        origin=origin,
        now=now,
    )
