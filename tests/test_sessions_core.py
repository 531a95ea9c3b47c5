"""The hot path and the deadline rules, with the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.dialects import sqlite

from app.core import session_check, sessions
from app.core.errors import InvalidSession, SessionExpired
from app.core.events import Origin
from app.db import scope_to_tenant
from app.models import Event, User, UserSession, UTCDateTime
from app.tokens import Claims, TokenExpired
from testkit.core import ask, check, enter, start_session
from testkit.mail import outbox_drained
from testkit.sql import statements_run, writes_in
from testkit.values import UA_MAC_CHROME

ORIGIN = Origin(ip="198.51.100.1", user_agent=UA_MAC_CHROME)


@pytest.fixture
def signed(services, clock, mailbox, member):
    result, token = start_session(services, clock, mailbox, member.email, origin=ORIGIN)
    outbox_drained(services)  # the code mail's own writes are done before a test counts
    return result, token


def test_a_touch_leaves_a_session_ended_since_its_check_alone(services, clock, signed):
    """A revocation committed between a request's check and its touch stays as it was:
    the touch does not bump last_seen_at of an ended session."""
    result, token = signed
    clock.advance(minutes=5)
    with services.session() as db:  # a read-only request: the touch is a plain statement
        claims = services.keys.verify(token, clock.now())
        scope_to_tenant(db, claims.tenant_id)
        current = session_check.check_session(db, claims, now=clock.now(), touch=False)
        with services.session(write=True) as other:  # ended meanwhile, on another node
            ended = other.get_one(UserSession, result.session.id)
            sessions.end_session(other, ended, "revoked_by_user", now=clock.now())
            other.commit()
        session_check._touch(db, current, clock.now())
        db.commit()
    with services.session() as db:
        stored = db.get_one(UserSession, result.session.id)
        assert stored.end_reason == "revoked_by_user"
        assert stored.last_seen_at == result.session.last_seen_at


def test_live_session_passes(services, clock, signed):
    result, token = signed
    current = check(services, clock, token)
    assert current.session.id == result.session.id
    assert current.user.email == "sam@acme.test"


def test_idle_timeout_one_second_either_side(services, clock, signed):
    _result, token = signed  # default policy: 30 minutes idle
    clock.advance(minutes=29, seconds=59)
    check(services, clock, token, touch=False)  # alive, and a poll does not extend
    clock.advance(seconds=2)
    with pytest.raises(SessionExpired) as caught:
        check(services, clock, token)
    assert caught.value.details["reason"] == "idle_expired"
    with services.session() as db:
        row = db.scalars(select(UserSession)).one()
        assert row.end_reason == "idle_expired" and row.ended_at == clock.now()


def test_activity_slides_the_idle_deadline(services, clock, signed):
    _result, token = signed
    for _ in range(6):  # an active person, 20 minutes apart, for two hours
        clock.advance(minutes=20)
        check(services, clock, token)
    clock.advance(minutes=29)
    assert check(services, clock, token)


def test_sliding_never_passes_the_absolute_deadline(services, clock, signed, make, tenant):
    result, token = signed
    start = clock.now()
    while clock.now() < start + timedelta(hours=11, minutes=50):
        clock.advance(minutes=10)
        check(services, clock, token)
    current = check(services, clock, token)
    assert current.expires_at == start + timedelta(hours=12)
    clock.set(start + timedelta(hours=12) - timedelta(seconds=1))
    assert check(services, clock, token)
    clock.advance(seconds=1)
    with pytest.raises(TokenExpired):  # the token's exp is the absolute deadline
        check(services, clock, token)
    claims = Claims(result.user.id, result.tenant.id, result.session.id, 2**40)
    with services.session() as db, pytest.raises(SessionExpired):
        session_check.check_session(db, claims, now=clock.now())


def test_tightening_the_policy_applies_on_the_next_request(services, clock, signed, make, tenant):
    _result, token = signed
    clock.advance(minutes=10)
    make.policy(tenant, idle_timeout=5 * 60)
    with pytest.raises(SessionExpired):
        check(services, clock, token)


def test_ended_session_is_refused_with_its_reason(services, clock, signed):
    result, token = signed
    with services.session(write=True) as db:
        row = db.get_one(UserSession, result.session.id)
        sessions.end_session(db, row, "revoked_by_user", now=clock.now())
        db.commit()
    with pytest.raises(InvalidSession) as caught:
        check(services, clock, token)
    assert caught.value.details["reason"] == "revoked_by_user"
    assert "another device" in caught.value.message


def test_disabled_person_is_refused(services, clock, signed, member):
    _result, token = signed
    with services.session(write=True) as db:
        db.get_one(User, member.id).disabled = True
        db.commit()
    with pytest.raises(InvalidSession):
        check(services, clock, token)


def test_writes_are_throttled(services, clock, signed):
    """A client calling once a second for ten minutes causes at most one write a minute."""
    _result, token = signed
    with statements_run(services.database) as statements:
        for _ in range(600):
            clock.advance(seconds=1)
            check(services, clock, token)
    writes = writes_in(statements)
    assert 1 <= len(writes) <= 10, writes[:3]


def test_end_other_sessions_keeps_the_current(services, clock, mailbox, member, signed):
    result, token = signed
    challenge_id = ask(services, clock, member.email, origin=ORIGIN)
    enter(services, clock, challenge_id, mailbox.last_code(member.email, 2), origin=ORIGIN)
    with services.session(write=True) as db:
        claims = services.keys.verify(token, clock.now())
        current = session_check.check_session(db, claims, now=clock.now())
        ended = sessions.end_other_sessions(db, current, now=clock.now(), origin=ORIGIN)
        db.commit()
    assert len(ended) == 1 and ended[0].id != result.session.id
    with services.session() as db:
        kinds = db.scalars(select(Event.details).where(Event.kind == "session.ended")).all()
        assert [k["reason"] for k in kinds] == ["revoked_by_user"]
        assert check(services, clock, token).session.ended_at is None


def test_a_person_cannot_touch_another_persons_session(services, clock, signed, make, tenant):
    from app.core.errors import NotFound

    result, _token = signed
    other = make.user("kim@acme.test", tenant)
    with services.session(write=True) as db:
        other_row = db.get_one(User, other.id)
        with pytest.raises(NotFound):
            sessions.own_session(db, other_row, result.session.id)


def test_a_check_inside_a_transaction_sees_what_it_wrote(services, clock, signed):
    """Inside a transaction the check reads through the ORM session, not on a connection
    of its own that could not see what the transaction wrote."""
    _result, token = signed
    with services.session(write=True) as db:
        claims = services.keys.verify(token, clock.now())
        row = db.get_one(UserSession, claims.session_id)
        row.ended_at = clock.now()
        row.end_reason = "revoked_by_user"
        db.flush()
        with pytest.raises(InvalidSession):
            session_check.check_session(db, claims, now=clock.now())
        db.rollback()
    assert check(services, clock, token).session.ended_at is None  # nothing was committed


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ("2026-11-23 16:39:01.916697", datetime(2026, 11, 23, 16, 39, 1, 916697, tzinfo=UTC)),
        ("2026-11-23 16:39:01", datetime(2026, 11, 23, 16, 39, 1, tzinfo=UTC)),  # CURRENT_TIMESTAMP
        ("2026-11-23T16:39:01.5", datetime(2026, 11, 23, 16, 39, 1, 500000, tzinfo=UTC)),
        ("2026-11-23", datetime(2026, 11, 23, tzinfo=UTC)),  # date('now'): the general way
        (None, None),
    ],
)
def test_sqlite_timestamps_read_back_as_utc(stored, expected):
    """UTCDateTime's one-call parse on SQLite (the hot path reads four a request) gives
    what the general processor gives, a datetime in UTC, whatever form the text has."""
    dialect = sqlite.dialect()
    read = UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)
    value = read(stored)
    assert value == expected
    assert value is None or value.tzinfo is UTC


def test_the_hot_path_joins_are_answered_from_indexes(services, signed):
    """The session check's three joins (person, tenant policy, device) each have an index
    holding ``id`` and every column the statement reads from that table (app.models,
    above Tenant), and SQLite's plan reads those indexes only: a column added to the
    statement but not to its index would silently send every validation to the table
    again. (PostgreSQL's planner chooses by its statistics; the indexes are there too.)"""
    result, _token = signed
    database = services.database
    reads: dict[str, set[str]] = {}
    for column in session_check.SESSION_FACTS.statement.selected_columns:
        reads.setdefault(column.table.name, set()).add(column.name)
    inspector = inspect(database.engine)
    for table in ("users", "tenants", "devices"):
        covering = [
            index["name"]
            for index in inspector.get_indexes(table)
            if index["column_names"][0] == "id" and set(index["column_names"]) == reads[table]
        ]
        assert covering, f"no index on {table} covers the columns the session check reads"
    if not database.is_sqlite:
        return
    sql, encode, _decode = session_check.SESSION_FACTS.compiled(database.plain.dialect)
    with database.engine.connect() as connection:
        raw = connection.connection.driver_connection
        query = "EXPLAIN QUERY PLAN " + sql
        plan = [row[3] for row in raw.execute(query, encode({"session_id": result.session.id}))]
    # (SQLite before 3.36 wrote "SEARCH TABLE users ..."; the index part is the same)
    assert "USING INDEX sqlite_autoindex_sessions_1" in plan[0]
    for index in (
        "ix_users_session_facts",
        "ix_tenants_session_policy",
        "ix_devices_session_facts",
    ):
        assert sum(f"USING COVERING INDEX {index} (id=?)" in step for step in plan[1:]) == 1
