"""One-time codes and sign-in, in the core, with the clock."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import pytest
from sqlalchemy import func, select

from app.core import codes
from app.core.errors import ChallengeLocked, InvalidCode, ValidationError
from app.core.events import Origin
from app.models import Challenge, Event, UserSession
from testkit import core
from testkit.mail import outbox_drained
from testkit.values import UA_MAC_CHROME

ORIGIN = Origin(ip="203.0.113.7", user_agent=UA_MAC_CHROME)


#: a code requested through the core from ORIGIN (the challenge id), and entered
ask = partial(core.ask, origin=ORIGIN)
enter = partial(core.enter, origin=ORIGIN)


def test_code_is_mailed_and_stored_only_as_a_keyed_hash(services, clock, mailbox, member):
    challenge_id = ask(services, clock, "  Sam@ACME.test ")
    code = mailbox.last_code(member.email)
    with services.session() as db:
        challenge = db.get_one(Challenge, challenge_id)
        assert challenge.email == member.email
        assert code not in challenge.code_hash
        assert challenge.code_hash == services.hasher.hash(challenge_id, code)
        assert challenge.expires_at == clock.now() + timedelta(minutes=10)
        assert db.scalar(select(Event.kind).where(Event.kind == "code.requested")) is not None


def test_unknown_email_gets_a_challenge_but_no_mail(services, clock, mailbox, member):
    challenge_id = ask(services, clock, "nobody@acme.test")
    assert challenge_id.startswith("chl_")
    outbox_drained(services)
    assert mailbox.to("nobody@acme.test") == []
    with pytest.raises(InvalidCode):
        enter(services, clock, challenge_id, "123456")


def test_malformed_email_is_refused(services, clock):
    with pytest.raises(ValidationError, match="valid email"):
        ask(services, clock, "not-an-email")


def test_right_code_starts_a_session_once(services, clock, mailbox, member):
    challenge_id = ask(services, clock, member.email)
    code = mailbox.last_code(member.email)
    result = enter(services, clock, challenge_id, code)
    assert result.session.id.startswith("sess_")
    assert result.device_cookie  # a new device gets a cookie
    assert result.new_device
    with pytest.raises(InvalidCode, match="used already"):
        enter(services, clock, challenge_id, code)
    with services.session() as db:
        assert db.scalar(select(func.count()).select_from(UserSession)) == 1


def test_five_wrong_codes_kill_the_challenge(services, clock, mailbox, member):
    challenge_id = ask(services, clock, member.email)
    code = mailbox.last_code(member.email)
    wrong = "000000" if code != "000000" else "111111"
    for left in (4, 3, 2, 1):
        with pytest.raises(InvalidCode, match=f"{left} tr"):
            enter(services, clock, challenge_id, wrong)
    with pytest.raises(ChallengeLocked):
        enter(services, clock, challenge_id, wrong)
    with pytest.raises(ChallengeLocked):
        enter(services, clock, challenge_id, code)  # even the right code: the challenge is dead
    with services.session() as db:
        assert db.get_one(Challenge, challenge_id).attempts == 5
        failed = db.scalar(
            select(func.count()).select_from(Event).where(Event.kind == "code.failed")
        )
        assert failed == 5


def test_code_expires_after_ten_minutes(services, clock, mailbox, member):
    challenge_id = ask(services, clock, member.email)
    code = mailbox.last_code(member.email)
    clock.advance(minutes=10)
    with pytest.raises(InvalidCode, match="expired"):
        enter(services, clock, challenge_id, code)


def test_code_still_works_just_before_expiry(services, clock, mailbox, member):
    challenge_id = ask(services, clock, member.email)
    code = mailbox.last_code(member.email)
    clock.advance(minutes=9, seconds=59)
    assert enter(services, clock, challenge_id, code).session


def test_a_resend_replaces_the_earlier_code(services, clock, mailbox, member):
    first = ask(services, clock, member.email)
    first_code = mailbox.last_code(member.email)
    second = ask(services, clock, member.email)
    second_code = mailbox.last_code(member.email, 2)
    with pytest.raises(InvalidCode):
        enter(services, clock, first, first_code)
    assert enter(services, clock, second, second_code).session


def test_code_with_spaces_is_accepted(services, clock, mailbox, member):
    challenge_id = ask(services, clock, member.email)
    code = mailbox.last_code(member.email)
    assert enter(services, clock, challenge_id, f" {code[:3]} {code[3:]} ").session


def test_disabled_person_gets_no_code(services, clock, mailbox, make, tenant):
    user = make.user("off@acme.test", tenant, disabled=True)
    ask(services, clock, user.email)
    outbox_drained(services)
    assert mailbox.to(user.email) == []


def test_same_device_cookie_is_recognised_and_bound_to_the_person(
    services, clock, mailbox, member, make, tenant
):
    first = enter(
        services, clock, ask(services, clock, member.email), mailbox.last_code(member.email)
    )
    again = enter(
        services,
        clock,
        ask(services, clock, member.email),
        mailbox.last_code(member.email, 2),
        device_cookie=first.device_cookie,
    )
    assert again.device.id == first.device.id
    assert again.device_cookie is None and not again.new_device
    assert again.session.id != first.session.id  # a new session at every sign-in
    other = make.user("kim@acme.test", tenant)
    theirs = enter(
        services,
        clock,
        ask(services, clock, other.email),
        mailbox.last_code(other.email),
        device_cookie=first.device_cookie,
    )
    assert theirs.device.id != first.device.id  # the cookie is worthless for another person


@pytest.mark.parametrize("typed", ["12", "abcdef", "1234567", "12345a", "١٢٣٤٥٦", "", "12 34 5"])
def test_input_that_cannot_be_a_code_costs_no_try(services, clock, mailbox, member, typed):
    """A typing slip is refused with what a code looks like: no try is counted, nothing
    is audited, and the right code still works afterwards."""
    challenge_id = ask(services, clock, member.email)
    code = mailbox.last_code(member.email)
    for _ in range(codes.MAX_ATTEMPTS + 1):  # more slips than there are tries
        with pytest.raises(ValidationError, match="A code is 6 digits") as refused:
            enter(services, clock, challenge_id, typed)
        assert refused.value.details.get("field") == "code" or refused.value.field == "code"
    with services.session() as db:
        assert db.get_one(Challenge, challenge_id).attempts == 0
        assert db.scalar(select(func.count()).where(Event.kind == "code.failed")) == 0
    spaced = f"{code[:3]} {code[3:]}"  # the way the email prints it is fine
    assert enter(services, clock, challenge_id, spaced).session.id.startswith("sess_")


def test_a_well_shaped_wrong_code_still_costs_a_try(services, clock, mailbox, member):
    challenge_id = ask(services, clock, member.email)
    code = mailbox.last_code(member.email)
    wrong = "000-000" if code != "000000" else "111-111"
    with pytest.raises(InvalidCode, match="4 tries left"):
        enter(services, clock, challenge_id, wrong)
    with services.session() as db:
        assert db.get_one(Challenge, challenge_id).attempts == 1
