"""Concurrent session limits hold under parallel sign-ins: 20 threads, each with its own
challenge and code, sign the same person in at once with a limit of 3. On SQLite the write
transaction (BEGIN IMMEDIATE) serialises them; on PostgreSQL the SELECT … FOR UPDATE on
the person's row does."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select, update

from app.core import codes, signin
from app.core.errors import ChallengeLocked, InvalidCode, SessionLimitReached
from app.core.events import Origin
from app.models import Challenge, Event, UserSession
from testkit.rows import Factory
from testkit.values import UA_IPAD

PARALLEL = 20
LIMIT = 3


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, clock):
    """(services, factory) on each database."""
    name = "services" if request.param == "sqlite" else "pg_services"
    services = request.getfixturevalue(name)
    return services, Factory(services, clock)


def open_challenges(services, clock, mailbox, email, count):
    """``count`` challenges with their mailed codes, all usable at once. Asking for a code
    replaces the earlier ones, so they are reopened afterwards: each thread then holds a
    live challenge of its own, as if each browser had asked just before the others."""
    challenges, mailed = [], []
    for _ in range(count):
        before = mailbox.count(email)
        with services.session(write=True) as db:
            challenge = codes.request_code(
                db,
                services.hasher,
                email,
                now=clock.now(),
                origin=Origin("203.0.113.9", ""),
                budgets=services.budgets,
            )
            db.commit()
        challenges.append(challenge.id)
        mailed.append(mailbox.last_code(email, before + 1))
    with services.session(write=True) as db:
        db.execute(update(Challenge).where(Challenge.id.in_(challenges)).values(consumed_at=None))
        db.commit()
    return list(zip(challenges, mailed, strict=True))


def race(services, clock, pairs):
    """Every pair signs in at the same moment, each thread on its own connection."""
    barrier = threading.Barrier(len(pairs))

    def attempt(number, challenge_id, code):
        barrier.wait()
        with services.session(write=True) as db:
            try:
                signin.sign_in(
                    db,
                    services.hasher,
                    challenge_id,
                    code,
                    now=clock.now(),
                    origin=Origin(f"10.0.0.{number}", UA_IPAD),
                    budgets=services.budgets,
                )
            except SessionLimitReached:
                db.commit()  # consistent state: nothing was changed
                return "refused"
            db.commit()
            return "signed in"

    with ThreadPoolExecutor(max_workers=len(pairs)) as pool:
        futures = [
            pool.submit(attempt, number, challenge_id, code)
            for number, (challenge_id, code) in enumerate(pairs)
        ]
        return [future.result(timeout=120) for future in futures]


def live_count(services, user_id):
    with services.session() as db:
        return db.scalar(
            select(func.count())
            .select_from(UserSession)
            .where(UserSession.user_id == user_id, UserSession.ended_at.is_(None))
        )


def test_parallel_sign_ins_evict_down_to_the_limit(backend, clock, mailbox):
    services, make = backend
    tenant = make.tenant("ward", max_sessions_per_user=LIMIT, limit_mode="evict_oldest")
    person = make.user("ada@ward.test", tenant)
    pairs = open_challenges(services, clock, mailbox, person.email, PARALLEL)

    outcomes = race(services, clock, pairs)

    assert outcomes == ["signed in"] * PARALLEL
    assert live_count(services, person.id) == LIMIT
    with services.session() as db:
        reasons = db.scalars(
            select(UserSession.end_reason).where(UserSession.ended_at.is_not(None))
        ).all()
        assert reasons == ["limit_evicted"] * (PARALLEL - LIMIT)
        created = db.scalar(
            select(func.count()).select_from(Event).where(Event.kind == "session.created")
        )
        assert created == PARALLEL


def test_parallel_sign_ins_in_deny_mode_stop_at_the_limit(backend, clock, mailbox):
    services, make = backend
    tenant = make.tenant("ward", max_sessions_per_user=LIMIT, limit_mode="deny")
    person = make.user("ada@ward.test", tenant)
    pairs = open_challenges(services, clock, mailbox, person.email, PARALLEL)

    outcomes = race(services, clock, pairs)

    assert outcomes.count("signed in") == LIMIT
    assert outcomes.count("refused") == PARALLEL - LIMIT
    assert live_count(services, person.id) == LIMIT
    with services.session() as db:
        # Refused sign-ins keep their codes (they may come back choosing a session to end).
        open_codes = db.scalar(
            select(func.count()).select_from(Challenge).where(Challenge.consumed_at.is_(None))
        )
        assert open_codes == PARALLEL - LIMIT


WRONG_GUESSES = 24


def test_parallel_wrong_codes_claim_exactly_the_allowed_tries(backend, clock, mailbox):
    """Each wrong try is claimed with one conditional UPDATE … RETURNING: of 24 wrong
    codes sent at once, exactly MAX_ATTEMPTS are counted (the first four answered "not
    right, n tries left", the fifth "too many wrong codes"), the rest find the challenge
    locked without being counted. (Reading attempts first and adding one later let 6-7
    through on PostgreSQL, and answered more "not right" than there were tries.)"""
    services, make = backend
    tenant = make.tenant("ward")
    person = make.user("ada@ward.test", tenant)
    [(challenge_id, code)] = open_challenges(services, clock, mailbox, person.email, 1)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    barrier = threading.Barrier(WRONG_GUESSES)

    def guess(number):
        barrier.wait()
        with services.session(write=True) as db:
            try:
                signin.sign_in(
                    db,
                    services.hasher,
                    challenge_id,
                    wrong,
                    now=clock.now(),
                    origin=Origin(f"10.0.1.{number}", UA_IPAD),
                    budgets=services.budgets,
                )
            except (InvalidCode, ChallengeLocked) as error:
                db.commit()  # a counted try is kept, as the request's commit keeps it
                return error.code
            db.commit()
            return "signed in"

    with ThreadPoolExecutor(max_workers=WRONG_GUESSES) as pool:
        outcomes = [f.result(timeout=120) for f in [pool.submit(guess, n) for n in range(24)]]

    assert outcomes.count("invalid_code") == codes.MAX_ATTEMPTS - 1
    assert outcomes.count("challenge_locked") == WRONG_GUESSES - codes.MAX_ATTEMPTS + 1
    with services.session() as db:
        assert db.get_one(Challenge, challenge_id).attempts == codes.MAX_ATTEMPTS
        failed = db.scalar(
            select(func.count()).select_from(Event).where(Event.kind == "code.failed")
        )
        assert failed == codes.MAX_ATTEMPTS
    # The right code no longer works either: the challenge is dead.
    with services.session(write=True) as db, pytest.raises(ChallengeLocked):
        signin.sign_in(
            db,
            services.hasher,
            challenge_id,
            code,
            now=clock.now(),
            origin=Origin("10.0.2.1", ""),
            budgets=services.budgets,
        )
