"""The session policy in the core, with the clock: each deadline rule one second either
side, sliding never past the absolute (or trusted) deadline, tightening and loosening the
policy, and changing it (ranges, all-or-nothing, audit)."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import pytest
from sqlalchemy import select

from app.core import policy, session_check, trust
from app.core.errors import SessionExpired, ValidationError
from app.core.events import Origin
from app.models import Device, Event, Tenant, UserSession
from app.tokens import TokenExpired
from testkit.core import check
from testkit.core import start_session as start_session_as
from testkit.values import UA_IPAD

ORIGIN = Origin(ip="198.51.100.20", user_agent=UA_IPAD)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

#: sign in through the core from ORIGIN: (SignIn, token)
start_session = partial(start_session_as, origin=ORIGIN)


def stored(services, session_id):
    with services.session() as db:
        return db.get_one(UserSession, session_id)


def change_policy(services, clock, tenant, **changes):
    with services.session(write=True) as db:
        row = db.get_one(Tenant, tenant.id)
        policy.update(db, row, changes, now=clock.now(), actor_id=None)
        db.commit()


def active_until(services, clock, token, moment, every=timedelta(minutes=20)):
    """A person active every ``every`` until ``moment`` (their last request before it)."""
    while clock.now() + every < moment:
        clock.advance(seconds=every.total_seconds())
        check(services, clock, token)


# --- idle deadline ----------------------------------------------------------------------------


def test_short_idle_timeout_one_second_either_side(services, clock, mailbox, make):
    tenant = make.tenant("ward", idle_timeout=5 * 60)
    make.user("ada@ward.test", tenant)
    result, token = start_session(services, clock, mailbox, "ada@ward.test")
    clock.advance(minutes=3)
    check(services, clock, token)  # activity at 3:00 moves the idle deadline to 8:00
    assert stored(services, result.session.id).idle_deadline == clock.now() + timedelta(minutes=5)
    clock.advance(minutes=4, seconds=59)
    assert check(services, clock, token, touch=False).expires_at == clock.now() + timedelta(
        seconds=1
    )
    clock.advance(seconds=2)
    with pytest.raises(SessionExpired) as caught:
        check(services, clock, token)
    assert caught.value.details["reason"] == "idle_expired"
    row = stored(services, result.session.id)
    assert row.end_reason == "idle_expired" and row.ended_at == clock.now()


def test_switching_extension_off_freezes_the_idle_deadline(services, clock, mailbox, make):
    tenant = make.tenant("ward")
    make.user("ada@ward.test", tenant)
    result, token = start_session(services, clock, mailbox, "ada@ward.test")
    signed_in_at = clock.now()
    clock.advance(minutes=20)
    check(services, clock, token)  # idle deadline now 50:00
    clock.advance(minutes=5)
    change_policy(services, clock, tenant, extend_on_activity=False)
    clock.advance(minutes=20)
    check(services, clock, token)  # 45:00: activity is written down but moves nothing
    row = stored(services, result.session.id)
    assert row.last_seen_at == clock.now()
    assert row.idle_deadline == signed_in_at + timedelta(minutes=50)
    clock.set(signed_in_at + timedelta(minutes=50) - timedelta(seconds=1))
    check(services, clock, token)
    clock.advance(seconds=2)
    with pytest.raises(SessionExpired):
        check(services, clock, token)


# --- absolute deadline and sliding ----------------------------------------------------------


def test_sliding_stops_at_the_absolute_deadline_of_a_short_policy(services, clock, mailbox, make):
    tenant = make.tenant("ward", idle_timeout=30 * 60, absolute_lifetime=HOUR.seconds)
    make.user("ada@ward.test", tenant)
    result, token = start_session(services, clock, mailbox, "ada@ward.test")
    end = clock.now() + HOUR
    clock.advance(minutes=25)
    check(services, clock, token)
    clock.advance(minutes=20)
    current = check(services, clock, token)
    # Activity at 0:45 would slide to 1:15; the deadline stops at the absolute 1:00.
    assert current.idle_deadline == end
    assert stored(services, result.session.id).idle_deadline == end
    clock.set(end - timedelta(seconds=1))
    check(services, clock, token)
    clock.advance(seconds=1)
    with pytest.raises(TokenExpired):  # the token's exp is the absolute deadline
        check(services, clock, token)


def test_trusted_device_gets_the_trusted_lifetime(services, clock, mailbox, make):
    tenant = make.tenant("ward", trusted_lifetime=7 * 86400)
    make.user("ada@ward.test", tenant)
    result, token = start_session(services, clock, mailbox, "ada@ward.test", trust_device=True)
    end = clock.now() + 7 * DAY
    assert result.session.absolute_deadline == end
    assert result.device.trusted_until == end
    # An active person on a trusted iPad: alive past the 12-hour absolute lifetime ...
    active_until(services, clock, token, end - timedelta(minutes=10), every=timedelta(minutes=25))
    current = check(services, clock, token)
    # ... and sliding stops at the trusted lifetime.
    assert current.idle_deadline == end and current.absolute_deadline == end
    clock.set(end - timedelta(seconds=1))
    check(services, clock, token)
    clock.set(end)
    with pytest.raises(TokenExpired):
        check(services, clock, token)


def test_trusted_device_keeps_the_absolute_lifetime_when_the_policy_says_so(
    services, clock, mailbox, make
):
    tenant = make.tenant("ward", trusted_outlives_absolute=False)
    make.user("ada@ward.test", tenant)
    result, _token = start_session(services, clock, mailbox, "ada@ward.test", trust_device=True)
    assert result.device.is_trusted(clock.now())
    assert result.session.absolute_deadline == clock.now() + 12 * HOUR


def test_stopping_trust_ends_nothing_then_the_ordinary_lifetime_applies(
    services, clock, mailbox, make
):
    tenant = make.tenant("ward")
    make.user("ada@ward.test", tenant)
    result, token = start_session(services, clock, mailbox, "ada@ward.test", trust_device=True)
    active_until(services, clock, token, clock.now() + 2 * DAY)
    with services.session(write=True) as db:
        current = session_check.check_session(
            db, services.keys.verify(token, clock.now()), now=clock.now()
        )
        trust.stop_trusting(db, current, result.device.id, now=clock.now(), origin=ORIGIN)
        db.commit()
    stopped = clock.now()
    assert check(services, clock, token).session.ended_at is None  # still signed in
    active_until(services, clock, token, stopped + 12 * HOUR - timedelta(seconds=1))
    clock.set(stopped + 12 * HOUR - timedelta(seconds=1))
    check(services, clock, token)
    clock.advance(seconds=1)
    with pytest.raises(SessionExpired) as caught:
        check(services, clock, token)
    assert caught.value.details["reason"] == "lifetime_expired"


# --- trusted idle timeout ----------------------------------------------------------------


def as_current(services, clock, token, work):
    """Run ``work(db, current)`` as a request of ``token``'s session would, without that
    request counting as activity; committed."""
    with services.session(write=True) as db:
        claims = services.keys.verify(token, clock.now())
        current = session_check.check_session(db, claims, now=clock.now(), touch=False)
        result = work(db, current)
        db.commit()
        return result


def test_a_trusted_device_outlasts_the_idle_timeout_until_the_trusted_one(
    services, clock, mailbox, make
):
    """Issue 23: "Trusted until 05 Jan 2027" beside "Expires in 29 minutes". A trusted
    iPad left alone for 31 minutes is still signed in; it ends 8 hours (the tenant's
    trusted idle timeout) after its last use, one second either side."""
    tenant = make.tenant("ward")
    assert tenant.idle_timeout == 30 * 60 and tenant.trusted_idle_timeout == 8 * 3600
    make.user("ada@ward.test", tenant)
    result, token = start_session(services, clock, mailbox, "ada@ward.test", trust_device=True)
    start = clock.now()
    assert result.session.idle_deadline == start + 8 * HOUR
    clock.advance(minutes=31)
    assert check(services, clock, token, touch=False).expires_at == start + 8 * HOUR
    clock.set(start + 8 * HOUR - timedelta(seconds=1))
    check(services, clock, token, touch=False)
    clock.set(start + 8 * HOUR)
    with pytest.raises(SessionExpired) as caught:
        check(services, clock, token)
    assert caught.value.details["reason"] == "idle_expired"
    assert stored(services, result.session.id).end_reason == "idle_expired"


def test_activity_on_a_trusted_device_slides_by_the_trusted_idle_timeout(
    services, clock, mailbox, make
):
    tenant = make.tenant("ward")
    make.user("ada@ward.test", tenant)
    result, token = start_session(services, clock, mailbox, "ada@ward.test", trust_device=True)
    clock.advance(hours=7)
    check(services, clock, token)  # used at 7:00: signed in until 15:00, past 12 hours
    used = clock.now()
    assert stored(services, result.session.id).idle_deadline == used + 8 * HOUR
    clock.set(used + 8 * HOUR - timedelta(seconds=1))
    check(services, clock, token, touch=False)
    clock.set(used + 8 * HOUR)
    with pytest.raises(SessionExpired):
        check(services, clock, token)


def test_an_untrusted_device_ends_after_the_idle_timeout(services, clock, mailbox, make):
    tenant = make.tenant("ward")
    make.user("ada@ward.test", tenant)
    result, token = start_session(services, clock, mailbox, "ada@ward.test")
    assert result.session.idle_deadline == clock.now() + timedelta(minutes=30)
    clock.advance(minutes=29, seconds=59)
    check(services, clock, token, touch=False)
    clock.advance(seconds=1)
    with pytest.raises(SessionExpired) as caught:
        check(services, clock, token)
    assert caught.value.details["reason"] == "idle_expired"


def test_trusting_a_device_gives_its_running_session_the_trusted_idle_timeout(
    services, clock, mailbox, make
):
    tenant = make.tenant("ward")
    make.user("ada@ward.test", tenant)
    result, token = start_session(services, clock, mailbox, "ada@ward.test")
    clock.advance(minutes=20)
    check(services, clock, token)  # used at 0:20
    used = clock.now()
    as_current(
        services,
        clock,
        token,
        lambda db, me: trust.trust_device(db, me, result.device.id, now=clock.now(), origin=ORIGIN),
    )
    assert stored(services, result.session.id).idle_deadline == used + 8 * HOUR
    clock.set(used + 2 * HOUR)  # long past the ordinary 30 minutes
    check(services, clock, token, touch=False)
    with services.session() as db:
        [event] = db.scalars(select(Event).where(Event.kind == "device.trusted")).all()
        assert event.details["sessions_extended"] == [result.session.id]


def test_stopping_trust_gives_back_the_idle_timeout_counted_from_then(
    services, clock, mailbox, make
):
    """An iPad unused for 2 hours stops being trusted: it is not signed out on the spot
    (the ordinary 30 minutes count from the moment trust ended), and then it is."""
    tenant = make.tenant("ward")
    make.user("ada@ward.test", tenant)
    result, token = start_session(services, clock, mailbox, "ada@ward.test", trust_device=True)
    clock.advance(hours=2)
    as_current(
        services,
        clock,
        token,
        lambda db, me: trust.stop_trusting(
            db, me, result.device.id, now=clock.now(), origin=ORIGIN
        ),
    )
    stopped = clock.now()
    clock.set(stopped + timedelta(minutes=30) - timedelta(seconds=1))
    assert check(services, clock, token, touch=False).expires_at == stopped + timedelta(minutes=30)
    clock.set(stopped + timedelta(minutes=30))
    with pytest.raises(SessionExpired) as caught:
        check(services, clock, token)
    assert caught.value.details["reason"] == "idle_expired"


def test_the_longer_of_the_two_idle_timeouts_applies(services, clock, mailbox, make):
    """A tenant whose idle timeout is longer than its trusted idle timeout does not cut
    trusted devices short: trust never makes a session end sooner."""
    tenant = make.tenant("ward", idle_timeout=12 * 3600, trusted_idle_timeout=3600)
    make.user("ada@ward.test", tenant)
    result, _token = start_session(services, clock, mailbox, "ada@ward.test", trust_device=True)
    assert result.session.idle_deadline == clock.now() + 12 * HOUR


def test_a_longer_trusted_idle_timeout_reaches_trusted_sessions_only(
    services, clock, mailbox, make
):
    tenant = make.tenant("ward")
    make.user("ada@ward.test", tenant)
    make.user("bo@ward.test", tenant)
    trusted, trusted_token = start_session(
        services, clock, mailbox, "ada@ward.test", trust_device=True
    )
    plain, _plain_token = start_session(services, clock, mailbox, "bo@ward.test")
    start = clock.now()
    clock.advance(minutes=10)
    change_policy(services, clock, tenant, trusted_idle_timeout=10 * 3600)
    assert stored(services, trusted.session.id).idle_deadline == start + 10 * HOUR
    assert stored(services, plain.session.id).idle_deadline == start + timedelta(minutes=30)
    with services.session() as db:
        [event] = db.scalars(select(Event).where(Event.kind == "policy.changed")).all()
        assert event.details["idle_extended"] == 1
        assert event.details["changes"] == {
            "trusted_idle_timeout": {"old": 8 * 3600, "new": 10 * 3600}
        }
    # A shorter one applies on the next check, as every tightening does.
    change_policy(services, clock, tenant, trusted_idle_timeout=3600)
    clock.set(start + HOUR)
    with pytest.raises(SessionExpired):
        check(services, clock, trusted_token)


def test_the_trusted_idle_timeout_has_a_range(services, clock, make):
    tenant = make.tenant("ward")
    for bad in (30, 31 * 86400, "8h", True):
        with pytest.raises(ValidationError) as caught:
            change_policy(services, clock, tenant, trusted_idle_timeout=bad)
        assert caught.value.field == "trustedIdleTimeout"
        assert "1 minute to 30 days" in caught.value.message
    with services.session() as db:
        assert db.get_one(Tenant, tenant.id).trusted_idle_timeout == 8 * 3600
    assert policy.as_dict(tenant)["trustedIdleTimeout"] == 8 * 3600


# --- changing the policy -------------------------------------------------------------------


def test_tightening_the_absolute_lifetime_applies_on_the_next_check(services, clock, mailbox, make):
    tenant = make.tenant("ward")
    make.user("ada@ward.test", tenant)
    result, token = start_session(services, clock, mailbox, "ada@ward.test")
    active_until(services, clock, token, clock.now() + 2 * HOUR)
    assert check(services, clock, token)
    change_policy(services, clock, tenant, absolute_lifetime=HOUR.seconds)
    with pytest.raises(SessionExpired) as caught:
        check(services, clock, token)
    assert caught.value.details["reason"] == "lifetime_expired"
    assert stored(services, result.session.id).end_reason == "lifetime_expired"


def test_loosening_never_lengthens_a_running_session(services, clock, mailbox, make):
    tenant = make.tenant("ward", absolute_lifetime=HOUR.seconds)
    make.user("ada@ward.test", tenant)
    _result, token = start_session(services, clock, mailbox, "ada@ward.test")
    started = clock.now()
    change_policy(services, clock, tenant, absolute_lifetime=30 * 86400)
    clock.advance(minutes=25)
    check(services, clock, token)
    clock.advance(minutes=25)
    assert check(services, clock, token).expires_at == started + HOUR


def test_a_longer_idle_timeout_reaches_running_sessions_on_their_next_request(
    services, clock, mailbox, make
):
    """Issue 21, finding 13: a session started under idle 60 s, the tenant raised to
    1800 s, a request 47 s later inside the write throttle (60 s under the new
    timeout, so nothing is written) → the session stays alive, where it used to
    expire at the old deadline. A session that had already run out before the change
    (nobody there to mark it ended) stays over."""
    tenant = make.tenant("ward", idle_timeout=60)
    make.user("ada@ward.test", tenant)
    make.user("bo@ward.test", tenant)
    gone, gone_token = start_session(services, clock, mailbox, "bo@ward.test")
    clock.advance(seconds=70)  # bo's ran out at 60 s, with nobody there to mark it
    result, token = start_session(services, clock, mailbox, "ada@ward.test")
    started = clock.now()
    clock.advance(seconds=1)
    change_policy(services, clock, tenant, idle_timeout=1800)
    assert stored(services, result.session.id).idle_deadline == started + timedelta(seconds=1800)

    clock.advance(seconds=47)
    current = check(services, clock, token)
    assert stored(services, result.session.id).last_seen_at == started  # inside the throttle
    assert current.idle_deadline == started + timedelta(seconds=1800)
    clock.set(started + timedelta(seconds=1799))
    assert check(services, clock, token, touch=False).expires_at == clock.now() + timedelta(
        seconds=1
    )
    with pytest.raises(SessionExpired):
        check(services, clock, gone_token)
    assert stored(services, gone.session.id).end_reason == "idle_expired"
    with services.session() as db:
        changed = db.scalars(select(Event).where(Event.kind == "policy.changed")).one()
        assert changed.details["idle_extended"] == 1


def test_a_longer_idle_timeout_keeps_frozen_and_fixed_deadlines_in_their_rules(
    services, clock, mailbox, make
):
    """A session that never slides (an API client's extendOnActivity false) counts the
    new timeout from its sign-in; one whose sliding the tenant switched off stays
    frozen where it stood."""
    tenant = make.tenant("ward", idle_timeout=600)
    make.user("ada@ward.test", tenant)
    fixed, _token = start_session(
        services, clock, mailbox, "ada@ward.test", extend_on_activity=False
    )
    signed_in_at = clock.now()
    clock.advance(minutes=5)
    change_policy(services, clock, tenant, idle_timeout=3600)
    assert stored(services, fixed.session.id).idle_deadline == signed_in_at + HOUR
    sliding, _token = start_session(services, clock, mailbox, "ada@ward.test")
    frozen_at = stored(services, sliding.session.id).idle_deadline
    change_policy(services, clock, tenant, extend_on_activity=False, idle_timeout=7200)
    assert stored(services, sliding.session.id).idle_deadline == frozen_at
    assert stored(services, fixed.session.id).idle_deadline == signed_in_at + 2 * HOUR


def test_tightening_the_trusted_lifetime_caps_trust_and_its_sessions(
    services, clock, mailbox, make
):
    tenant = make.tenant("ward")  # trusted for 30 days by default
    make.user("ada@ward.test", tenant)
    result, token = start_session(services, clock, mailbox, "ada@ward.test", trust_device=True)
    started = clock.now()
    active_until(services, clock, token, started + DAY)
    change_policy(services, clock, tenant, trusted_lifetime=2 * 86400)
    with services.session() as db:
        device = db.get_one(Device, result.device.id)
        assert device.trusted_until == clock.now() + 2 * DAY
        changed = db.scalars(select(Event).where(Event.kind == "policy.changed")).one()
        assert changed.details["trust_capped"] == 1
        assert changed.details["changes"]["trusted_lifetime"] == {
            "old": 30 * 86400,
            "new": 2 * 86400,
        }
    assert check(services, clock, token).absolute_deadline == started + 2 * DAY
    active_until(services, clock, token, started + 2 * DAY - timedelta(seconds=1))
    clock.set(started + 2 * DAY - timedelta(seconds=1))
    check(services, clock, token)
    clock.advance(seconds=1)
    with pytest.raises(SessionExpired):
        check(services, clock, token)


def test_a_policy_change_is_audited_with_old_and_new_values(services, clock, make):
    tenant = make.tenant("ward")
    admin = make.user("boss@ward.test", tenant, role="admin")
    with services.session(write=True) as db:
        row = db.get_one(Tenant, tenant.id)
        policy.update(
            db,
            row,
            {"idle_timeout": 15 * 60, "limit_mode": "deny", "notify_new_device": True},
            now=clock.now(),
            actor_id=admin.id,
            origin=ORIGIN,
        )
        db.commit()
    with services.session() as db:
        event = db.scalars(select(Event).where(Event.kind == "policy.changed")).one()
        assert event.actor_id == admin.id and event.ip == ORIGIN.ip
        # Only what changed: notify_new_device was already on.
        assert event.details["changes"] == {
            "idle_timeout": {"old": 1800, "new": 900},
            "limit_mode": {"old": "evict_oldest", "new": "deny"},
        }
        assert db.get_one(Tenant, tenant.id).idle_timeout == 900


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        (
            {"absolute_lifetime": 60},
            "absoluteLifetime",
            "Absolute lifetime must be 5 minutes to 30 days",
        ),
        ({"absolute_lifetime": 31 * 86400}, "absoluteLifetime", "5 minutes to 30 days"),
        ({"trusted_lifetime": 366 * 86400}, "trustedLifetime", "1 hour to 365 days"),
        ({"idle_timeout": 0}, "idleTimeout", "Idle timeout must be 1 minute to 30 days"),
        ({"max_sessions_per_user": -1}, "maxSessionsPerUser", "0 to 1000 (0 means no limit)"),
        ({"limit_mode": "kick"}, "limitMode", "evict_oldest or deny"),
        ({"extend_on_activity": "yes"}, "extendOnActivity", "true or false"),
        ({"idle_timeout": 7200, "absolute_lifetime": 3600}, "idleTimeout", "cannot be longer"),
    ],
)
def test_out_of_range_values_are_refused_and_never_stored(
    services, clock, make, changes, field, words
):
    tenant = make.tenant("ward")
    with services.session(write=True) as db:
        row = db.get_one(Tenant, tenant.id)
        with pytest.raises(ValidationError) as caught:
            policy.update(
                db, row, {"max_sessions_per_user": 3, **changes}, now=clock.now(), actor_id=None
            )
        db.commit()
    assert caught.value.field == field and words in caught.value.message
    with services.session() as db:
        row = db.get_one(Tenant, tenant.id)
        assert row.max_sessions_per_user == 10 and row.absolute_lifetime == 12 * 3600
        assert row.idle_timeout == 1800 and row.limit_mode == "evict_oldest"
        assert db.scalars(select(Event).where(Event.kind == "policy.changed")).all() == []
