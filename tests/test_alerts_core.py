"""Suspicious-activity rules in the core, with the clock and a GeoIP database of our own:
new device, new country, travel speed, bursts of wrong codes and the slow-down."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from mmdb_writer import MmdbF64, MMDBWriter
from netaddr import IPSet
from sqlalchemy import select

from app import geo
from app.core import codes, deployment, signin
from app.core.errors import ChallengeLocked, InvalidCode, RateLimited
from app.core.events import Origin
from app.mail import plain_text
from app.mail_templates import when
from app.models import Alert, CodeSlowdown, Event, NotMeToken, UserSession
from testkit.mail import outbox_drained
from testkit.values import UA_IPAD, UA_MAC_CHROME

LONDON = "203.0.113.10"
LONDON_TOO = "203.0.113.99"
PARIS = "203.0.113.200"
NEW_YORK = "198.51.100.20"
UNKNOWN = "192.0.2.1"  # not in the test database

PLACES = {
    "203.0.113.0/25": ("GB", "United Kingdom", "London", 51.5074, -0.1278),
    "203.0.113.128/25": ("FR", "France", "Paris", 48.8566, 2.3522),
    "198.51.100.0/24": ("US", "United States", "New York", 40.7128, -74.0060),
}


def build_geoip(path: Path) -> Path:
    """A small MaxMind City database (the real format, read by geoip2) of test ranges."""
    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="GeoIP2-City",
        languages=["en"],
        description="Holdfast test places",
    )
    for network, (iso, country, city, lat, lon) in PLACES.items():
        writer.insert_network(
            IPSet([network]),
            {
                "country": {"iso_code": iso, "names": {"en": country}},
                "city": {"names": {"en": city}},
                "location": {"latitude": MmdbF64(lat), "longitude": MmdbF64(lon)},
            },
        )
    writer.to_db_file(str(path))
    return path


@pytest.fixture
def geoip_db(tmp_path: Path) -> str:
    return str(build_geoip(tmp_path / "places.mmdb"))


@dataclass
class Person:
    """Signs one person in through the core, reading the code from the real mailbox."""

    services: object
    clock: object
    mailbox: object
    email: str
    geoip: str | None = None
    cookies: dict[str, str] = field(default_factory=dict)

    def configured(self, write: bool = True):
        db = self.services.session(write=write)
        deployment.configure(
            db,
            deployment.Deployment.from_config(
                base_url="https://holdfast.test", geoip_db=self.geoip
            ),
        )
        return db

    def ask(self, ip: str, ua: str = UA_MAC_CHROME) -> str:
        with self.configured() as db:
            challenge = codes.request_code(
                db,
                self.services.hasher,
                self.email,
                now=self.clock.now(),
                origin=Origin(ip, ua),
                budgets=self.services.budgets,
            )
            db.commit()
            return challenge.id

    def enter(self, challenge_id: str, code: str, ip: str, *, device: str | None = None, **kw):
        with self.configured() as db:
            try:
                result = signin.sign_in(
                    db,
                    self.services.hasher,
                    challenge_id,
                    code,
                    now=self.clock.now(),
                    origin=Origin(ip, kw.pop("ua", UA_MAC_CHROME)),
                    device_cookie=self.cookies.get(device) if device else None,
                    budgets=self.services.budgets,
                    **kw,
                )
            finally:
                db.commit()  # a HoldfastError leaves consistent state meant to be kept
        if device and result.device_cookie:
            self.cookies[device] = result.device_cookie
        return result

    def sign_in(self, ip: str, *, device: str | None = None, **kw):
        before = self.mailbox.count(self.email)
        challenge_id = self.ask(ip, kw.get("ua", UA_MAC_CHROME))
        code = self.mailbox.last_code(self.email, before + 1)
        return self.enter(challenge_id, code, ip, device=device, **kw)


@pytest.fixture
def sam(services, clock, mailbox, member, geoip_db) -> Person:
    return Person(services, clock, mailbox, member.email, geoip_db)


def alerts_of(services, kind: str | None = None) -> list[Alert]:
    with services.session() as db:
        query = select(Alert).order_by(Alert.created_at, Alert.id)
        if kind:
            query = query.where(Alert.kind == kind)
        return list(db.scalars(query))


def mails(services, mailbox, address: str, subject_part: str) -> list:
    """What the mailbox holds for ``address`` once the outbox has sent what is due."""
    outbox_drained(services)
    return [m for m in mailbox.to(address) if subject_part in m["Subject"]]


def body(message) -> str:
    return plain_text(message)


# --- GeoIP ------------------------------------------------------------------------------------


def test_geoip_lookup_reads_the_maxmind_database(geoip_db):
    locator = geo.locator(geoip_db)
    london = locator.lookup(LONDON)
    assert (london.country, london.city, london.label) == ("GB", "London", "London, United Kingdom")
    assert locator.lookup(UNKNOWN) is None
    assert locator.lookup("not an address") is None
    assert geo.locator(None) is None
    assert 5500 < geo.distance_km(london, locator.lookup(NEW_YORK)) < 5650
    assert 330 < geo.distance_km(london, locator.lookup(PARIS)) < 360


def test_unreadable_geoip_database_means_no_locations(tmp_path):
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(b"not a database")
    assert geo.locator(str(broken)) is None


# --- new device -------------------------------------------------------------------------------


def test_first_device_is_not_news(sam, services, mailbox, member):
    sam.sign_in(LONDON, device="laptop")
    assert alerts_of(services) == []
    assert mails(services, mailbox, member.email, "New sign-in") == []


def test_new_device_raises_a_low_alert_and_mails_a_single_use_link(
    sam, services, clock, mailbox, member
):
    sam.sign_in(LONDON, device="laptop")
    clock.advance(hours=2)
    second = sam.sign_in(NEW_YORK, device="ipad", ua=UA_IPAD)
    assert second.new_device

    [alert] = alerts_of(services, "new_device")
    assert (alert.severity, alert.status, alert.user_id) == ("low", "open", member.id)
    assert alert.session_id == second.session.id
    assert alert.ip == NEW_YORK
    with services.session() as db:
        raised = db.scalars(select(Event).where(Event.kind == "alert.raised")).all()
        [event] = [e for e in raised if e.details["alert_id"] == alert.id]
        assert (event.subject_id, event.session_id) == (member.id, second.session.id)
        assert event.details["severity"] == "low"

    [mail] = mails(services, mailbox, member.email, "New sign-in")
    text = body(mail)
    assert "What:  Safari on iOS (tablet)" in text
    assert "Where: New York, United States (IP 198.51.100.20)" in text
    assert f"When:  {when(clock.now())}" in text
    link = re.search(r"https://holdfast\.test/account/not-me/(\S+)", text)
    assert link, text
    raw = link.group(1)
    with services.session() as db:
        token = db.scalars(select(NotMeToken)).one()
        assert token.token_hash == services.hasher.hash("not-me", raw)
        assert raw not in token.token_hash
        assert token.session_id == second.session.id
        assert token.expires_at == clock.now() + timedelta(days=7)


def test_known_device_raises_nothing(sam, services, clock, mailbox, member):
    sam.sign_in(LONDON, device="laptop")
    sam.sign_in(LONDON, device="ipad", ua=UA_IPAD)
    clock.advance(days=1)
    again = sam.sign_in(LONDON, device="ipad", ua=UA_IPAD)
    assert not again.new_device
    assert len(alerts_of(services, "new_device")) == 1
    assert len(mails(services, mailbox, member.email, "New sign-in")) == 1


def test_new_device_mail_follows_the_policy(sam, services, mailbox, member, make, tenant):
    make.policy(tenant, notify_new_device=False)
    sam.sign_in(LONDON, device="laptop")
    sam.sign_in(LONDON, device="ipad", ua=UA_IPAD)
    assert len(alerts_of(services, "new_device")) == 1  # admins still see it
    assert mails(services, mailbox, member.email, "New sign-in") == []


# --- places -----------------------------------------------------------------------------------


def test_sign_in_stores_a_readable_place(sam, services):
    result = sam.sign_in(PARIS, device="laptop")
    with services.session() as db:
        assert db.get_one(UserSession, result.session.id).location == "Paris, France"
    unknown = sam.sign_in(UNKNOWN, device="laptop")
    with services.session() as db:
        assert db.get_one(UserSession, unknown.session.id).location is None


def test_without_a_geoip_database_there_are_no_location_rules(
    services, clock, mailbox, member, make
):
    person = Person(services, clock, mailbox, member.email, geoip=None)
    person.sign_in(LONDON, device="laptop")
    clock.advance(minutes=30)
    result = person.sign_in(NEW_YORK, device="laptop")
    with services.session() as db:
        assert db.get_one(UserSession, result.session.id).location is None
    assert alerts_of(services) == []


def test_new_country_raises_a_medium_alert(sam, services, clock):
    sam.sign_in(LONDON, device="laptop")
    clock.advance(days=2)
    sam.sign_in(LONDON_TOO, device="laptop")
    assert alerts_of(services, "new_country") == []  # same country, another address

    clock.advance(days=2)
    result = sam.sign_in(NEW_YORK, device="laptop")
    [alert] = alerts_of(services, "new_country")
    assert (alert.severity, alert.session_id) == ("medium", result.session.id)
    assert alert.details["country"] == "US"
    assert alert.details["known_countries"] == ["GB"]
    # Two days for 5,570 km is no impossible journey.
    assert alerts_of(services, "impossible_travel") == []

    clock.advance(days=2)
    sam.sign_in(NEW_YORK, device="laptop")
    assert len(alerts_of(services, "new_country")) == 1  # known now


def test_impossible_travel_is_high_and_emailed_to_admins(
    sam, services, clock, mailbox, make, tenant
):
    admin = make.user("ada@acme.test", tenant, role="admin")
    sam.sign_in(LONDON, device="laptop")
    clock.advance(hours=1)
    result = sam.sign_in(NEW_YORK, device="laptop")

    [alert] = alerts_of(services, "impossible_travel")
    assert alert.severity == "high"
    assert alert.session_id == result.session.id
    assert 5500 < alert.details["distance_km"] < 5650
    assert alert.details["speed_kmh"] > 5000
    [mail] = mails(services, mailbox, admin.email, "High alert: Impossible travel")
    text = body(mail)
    assert "sam@acme.test" in text
    assert "https://holdfast.test/admin/alerts" in text


def test_travel_speed_threshold(sam, services, clock):
    # London -> Paris (about 340 km) in an hour: short hops are within GeoIP's error.
    sam.sign_in(LONDON, device="laptop")
    clock.advance(hours=1)
    sam.sign_in(PARIS, device="laptop")
    assert alerts_of(services, "impossible_travel") == []
    # Paris -> New York (5,840 km) in 7 hours is a flight (834 km/h): allowed...
    clock.advance(hours=7)
    sam.sign_in(NEW_YORK, device="laptop")
    assert alerts_of(services, "impossible_travel") == []
    # ...back to London (5,570 km) in 6 hours is 928 km/h: too fast.
    clock.advance(hours=6)
    sam.sign_in(LONDON, device="laptop")
    [alert] = alerts_of(services, "impossible_travel")
    assert 900 < alert.details["speed_kmh"] < 960


# --- wrong codes ------------------------------------------------------------------------------


def wrong_codes(person: Person, count: int, ip_prefix: str = "203.0.113.") -> None:
    """``count`` wrong codes for the account, from ever-changing addresses."""
    done = 0
    while done < count:
        challenge_id = person.ask(f"{ip_prefix}{done % 100 + 1}")
        for _attempt in range(min(5, count - done)):
            with pytest.raises((InvalidCode, ChallengeLocked)):
                person.enter(challenge_id, "000000", f"{ip_prefix}{done % 100 + 1}")
            done += 1


def test_a_burst_of_wrong_codes_for_one_account_raises_one_alert(sam, services, clock):
    wrong_codes(sam, 9)
    assert alerts_of(services, "code_burst") == []
    wrong_codes(sam, 3)  # the 10th within 15 minutes, whatever the addresses
    [alert] = alerts_of(services, "code_burst")
    assert alert.severity == "medium"
    assert alert.details["failures"] == 10

    clock.advance(minutes=16)
    wrong_codes(sam, 9)
    assert len(alerts_of(services, "code_burst")) == 1  # a new window, not yet 10
    wrong_codes(sam, 1)
    assert len(alerts_of(services, "code_burst")) == 2


def test_wrong_codes_spread_out_raise_nothing(sam, services, clock):
    for _round in range(3):  # 27 wrong codes, never 10 within 15 minutes
        wrong_codes(sam, 9)
        clock.advance(minutes=16)
    assert alerts_of(services, "code_burst") == []


def run_of_wrong_codes(services, address: str) -> CodeSlowdown | None:
    with services.session() as db:
        return db.get(CodeSlowdown, services.hasher.hash("code slow-down", address))


def arrange_run(services, clock, address: str, failures: int) -> None:
    """``failures`` wrong codes in a row for ``address``, as if entered before."""
    with services.session(write=True) as db:
        db.merge(
            CodeSlowdown(
                key=services.hasher.hash("code slow-down", address),
                failures=failures,
                updated_at=clock.now(),
            )
        )
        db.commit()


def test_a_hundred_wrong_codes_slow_the_address_down(
    sam, services, clock, mailbox, make, tenant, member
):
    admin = make.user("ada@acme.test", tenant, role="admin")
    arrange_run(services, clock, member.email, 98)
    wrong_codes(sam, 1)
    assert alerts_of(services, "code_sign_in_slowed") == []
    wrong_codes(sam, 1)  # the 100th in a row

    [alert] = alerts_of(services, "code_sign_in_slowed")
    assert alert.severity == "high"
    assert mails(services, mailbox, admin.email, "High alert: Code sign-in slowed")
    assert run_of_wrong_codes(services, member.email).checks_after == clock.now() + timedelta(
        seconds=30
    )

    # Even the right code is refused until then, and no code is checked (none counted).
    before = mailbox.count(member.email)
    challenge_id = sam.ask(LONDON)
    code = mailbox.last_code(member.email, before + 1)
    with pytest.raises(RateLimited) as refused:
        sam.enter(challenge_id, code, LONDON)
    assert refused.value.details["retry_after"] == 30
    assert "for this address" in refused.value.message

    # One more wrong code after the wait: the next wait doubles.
    clock.advance(seconds=31)
    with pytest.raises(InvalidCode):
        sam.enter(challenge_id, "000000", LONDON)
    run = run_of_wrong_codes(services, member.email)
    assert run.failures == 101
    assert run.checks_after == clock.now() + timedelta(seconds=60)
    with pytest.raises(RateLimited):
        sam.enter(challenge_id, code, LONDON)

    # After the wait the right code works, and the run is over.
    clock.advance(seconds=61)
    sam.enter(challenge_id, code, LONDON)
    assert run_of_wrong_codes(services, member.email) is None
    assert len(alerts_of(services, "code_sign_in_slowed")) == 1


def test_an_unknown_address_is_slowed_down_alike(sam, services, clock, member):
    """The answers after a hundred wrong codes are the same whether the address has an
    account or not: the slow-down tells nobody which addresses exist."""
    nobody = Person(services, clock, sam.mailbox, "nobody@acme.test", None)
    refusals = {}
    for person in (sam, nobody):
        arrange_run(services, clock, person.email, 99)
        challenge_id = person.ask(LONDON)
        with pytest.raises(InvalidCode):
            person.enter(challenge_id, "000000", LONDON)  # the 100th
        with pytest.raises(RateLimited) as refused:
            person.enter(challenge_id, "111111", LONDON)
        refusals[person.email] = (refused.value.message, refused.value.details)
    assert refusals[member.email] == refusals["nobody@acme.test"]
    # Only the known address's tenant hears of it.
    [alert] = alerts_of(services, "code_sign_in_slowed")
    assert alert.user_id == member.id


def test_the_slow_down_never_locks_out_a_trusted_device(sam, services, clock, mailbox, member):
    sam.sign_in(LONDON, device="laptop", trust_device=True)
    arrange_run(services, clock, member.email, 99)
    wrong_codes(sam, 1)
    before = mailbox.count(member.email)
    challenge_id = sam.ask(LONDON)
    code = mailbox.last_code(member.email, before + 1)
    with pytest.raises(RateLimited):
        sam.enter(challenge_id, code, NEW_YORK, device="stranger")
    result = sam.enter(challenge_id, code, LONDON, device="laptop")
    assert result.device.is_trusted(clock.now())
    assert not result.new_device
