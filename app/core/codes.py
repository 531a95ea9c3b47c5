"""One-time codes sent by email: asking for one, checking one.

* A code is 6 random digits, stored only as a keyed hash, valid for 10 minutes, usable
  once, dead after 5 wrong tries (each wrong try is claimed with one conditional UPDATE,
  so parallel guesses never get more); asking again replaces the earlier code.
* The code goes to an address, once, however many organisations the address has an
  account in. Unknown (or disabled) addresses get a challenge too, whose code is never
  sent, so no answer tells a caller whether an account exists.
* Asking draws on the address's and the client network's code budgets; checking, on the
  check budgets and the address's slow-down (app.ratelimit, app.core.code_checks).

What a right code leads to: app.core.signin (a new session) and app.core.reauth (a fresh
sign-in of the current one).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import otp
from app.core import code_checks, events
from app.core.accounts import accounts_of, normalise_email
from app.core.budgets import CodeBudgets
from app.core.deployment import deployment
from app.core.errors import N_, ChallengeLocked, InvalidCode, ValidationError
from app.core.events import Origin
from app.crypto import Hasher
from app.models import Challenge, User
from app.outbox import queue_mail

CODE_LIFETIME = timedelta(minutes=10)
#: the sign-in link mailed with a code (app.core.sign_in_links): challenge id, secret
LINK_PATH = "/login/link/{challenge_id}/{secret}"

MAX_ATTEMPTS = 5

#: what a typed "code" that cannot be one is told; it costs no try
NOT_A_CODE = "A code is 6 digits, like 123 456. Check the email and type it again."


def require_code_shape(code: object) -> str:
    """The code's 6 digits. Raises ValidationError (field ``code``) when the input cannot
    be a code at all (wrong length, letters): such a typing slip is refused before any
    check, so it neither costs one of the challenge's tries nor draws on the check
    budgets, and nothing is audited."""
    digits = otp.code_digits(code)
    if digits is None:
        raise ValidationError(NOT_A_CODE, field="code")
    return digits


def request_code(
    db: Session,
    hasher: Hasher,
    email: str,
    *,
    now: datetime,
    origin: Origin,
    budgets: CodeBudgets,
    product: str = "Holdfast",
    account: User | None = None,
) -> Challenge:
    """Start a sign-in: a challenge for ``email``, and (only when the address has an
    enabled account somewhere) one email with the code. With ``account`` (a fresh
    sign-in of that account's session) the code is for that account alone. Every request
    draws on the client network's budget and the normalised address's (known or not, so
    the answer never tells them apart). Raises ValidationError for a malformed address,
    RateLimited when a budget is spent."""
    budgets.spend_network(db, origin.ip, now=now)
    email = normalise_email(email)
    budgets.spend_address(db, email, now=now)
    if account is not None:
        accounts = [] if account.disabled else [account]
    else:
        accounts = accounts_of(db, email)
    # One account: the challenge names it (its tenant's audit trail shows the request).
    # None or several: it names none, and the accounts are found by address at the check.
    only = accounts[0] if len(accounts) == 1 else None
    # A new code replaces any earlier one still open for this address.
    db.execute(
        update(Challenge)
        .where(Challenge.email == email, Challenge.consumed_at.is_(None))
        .values(consumed_at=now)
        .execution_options(synchronize_session=False)
    )
    code = otp.new_code()
    challenge = Challenge(
        id=f"chl_{secrets.token_urlsafe(16)}",
        email=email,
        user_id=only.id if only else None,
        tenant_id=only.tenant_id if only else None,
        created_at=now,
        expires_at=now + CODE_LIFETIME,
        ip=origin.ip,
        attempts=0,
    )
    challenge.code_hash = hasher.hash(challenge.id, code)
    # The mail also carries a link, good where the code is (a sign-in's, or a fresh
    # sign-in's: app.core.sign_in_links checks the browser that asked).
    link_secret = secrets.token_urlsafe(24)
    challenge.link_hash = hasher.hash("sign-in link", challenge.id, link_secret)
    db.add(challenge)
    audited_accounts: list[User | None] = [*accounts] or [None]
    for audited in audited_accounts:
        events.record(
            db,
            "code.requested",
            now=now,
            tenant_id=audited.tenant_id if audited else None,
            origin=origin,
            subject_id=audited.id if audited else None,
            challenge_id=challenge.id,
            known=audited is not None,
        )
    if accounts:
        queue_mail(
            db,
            "sign_in_code",
            to=email,
            values={
                "product": product,
                "code": code,
                "minutes": int(CODE_LIFETIME.total_seconds() // 60),
                "ip": origin.ip,
                "asked_at": now,
                "link": deployment(db).link(
                    LINK_PATH.format(challenge_id=challenge.id, secret=link_secret)
                ),
            },
            tenant_id=accounts[0].tenant_id,
            now=now,
            give_up_at=challenge.expires_at,
            language=accounts[0].language,
        )
    db.flush()
    return challenge


def accounts_for(db: Session, challenge: Challenge) -> list[User]:
    """The enabled accounts a challenge's code signs in to: the one it names, or (it
    names none) every enabled account of its address; none for an unknown address."""
    if challenge.user_id:
        user = db.scalars(
            select(User).where(User.id == challenge.user_id).execution_options(all_tenants=True)
        ).one_or_none()
        return [user] if user is not None and not user.disabled else []
    return accounts_of(db, challenge.email)


def consume(db: Session, challenge: Challenge, now: datetime) -> None:
    """Use the code up, atomically: of parallel submissions exactly one gets here."""
    consumed = db.execute(
        update(Challenge)
        .where(
            Challenge.id == challenge.id,
            Challenge.consumed_at.is_(None),
            Challenge.attempts < MAX_ATTEMPTS,
        )
        .values(consumed_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if consumed != 1:
        raise InvalidCode(N_("That code was used already. Ask for a new code."))


def check_link(
    hasher: Hasher, challenge: Challenge, secret: str, accounts: list[User], *, now: datetime
) -> None:
    """Accept the sign-in link of ``challenge`` in place of its code: the same expiry,
    the same single use (the caller consumes the challenge), dead once the code is
    locked. A wrong link is not counted (its secret has 192 bits). Raises InvalidCode or
    ChallengeLocked."""
    if challenge.consumed_at is not None:
        raise InvalidCode(N_("That sign-in link was used already or replaced. Ask for a new code."))
    if challenge.attempts >= MAX_ATTEMPTS:
        raise ChallengeLocked()
    if now >= challenge.expires_at:
        raise InvalidCode(N_("That sign-in link has expired. Ask for a new code."))
    if not (
        accounts
        and challenge.link_hash
        and isinstance(secret, str)
        and hasher.matches(challenge.link_hash, "sign-in link", challenge.id, secret)
    ):
        raise InvalidCode(N_("That sign-in link is not valid. Ask for a new code."))


def check_code(
    db: Session,
    hasher: Hasher,
    challenge: Challenge,
    code: str,
    accounts: list[User],
    *,
    now: datetime,
    origin: Origin,
) -> None:
    """Accept the emailed code of ``challenge`` for ``accounts`` (its enabled accounts:
    none for an unknown address, whose code never matches). A wrong code is claimed
    against the challenge, audited as ``code.failed`` in each account's tenant and
    counted for each account's wrong-code rules (app.core.sign_in_rules). Raises InvalidCode or
    ChallengeLocked; ValidationError (no try counted) for input that cannot be a code."""
    if challenge.consumed_at is not None:
        raise InvalidCode(N_("That code was used already or replaced. Ask for a new code."))
    if challenge.attempts >= MAX_ATTEMPTS:
        raise ChallengeLocked()
    if now >= challenge.expires_at:
        raise InvalidCode(N_("That code has expired. Ask for a new code."))
    digits = require_code_shape(code)
    if accounts and hasher.matches(challenge.code_hash, challenge.id, digits):
        return
    attempts = claim_attempt(db, challenge)
    audited: list[User | None] = [*accounts] or [None]
    for account in audited:
        events.record(
            db,
            "code.failed",
            now=now,
            tenant_id=account.tenant_id if account else challenge.tenant_id,
            origin=origin,
            subject_id=account.id if account else challenge.user_id,
            challenge_id=challenge.id,
            attempts=attempts,
        )
    db.flush()
    code_checks.wrong_code(
        db, hasher, address=challenge.email, accounts=accounts, now=now, origin=origin
    )
    if attempts >= MAX_ATTEMPTS:
        raise ChallengeLocked()
    left = MAX_ATTEMPTS - attempts
    raise InvalidCode.tries_left(left)


def claim_attempt(db: Session, challenge: Challenge) -> int:
    """Count one wrong try against the challenge and return how many there have been,
    atomically: one conditional ``UPDATE … SET attempts = attempts + 1 WHERE attempts <
    MAX_ATTEMPTS … RETURNING attempts``. Parallel wrong codes queue on the row (PostgreSQL
    re-checks the condition on the row as the previous writer left it; SQLite's writes
    run one at a time), so exactly MAX_ATTEMPTS are ever counted. Raises ChallengeLocked
    for a try past the limit, InvalidCode when the code was used meanwhile (neither is
    counted)."""
    counted = db.execute(
        update(Challenge)
        .where(
            Challenge.id == challenge.id,
            Challenge.attempts < MAX_ATTEMPTS,
            Challenge.consumed_at.is_(None),
        )
        .values(attempts=Challenge.attempts + 1)
        .returning(Challenge.attempts)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if counted is None:
        used = db.scalar(select(Challenge.consumed_at).where(Challenge.id == challenge.id))
        if used is not None:
            raise InvalidCode(N_("That code was used already or replaced. Ask for a new code."))
        raise ChallengeLocked()
    return int(counted)
