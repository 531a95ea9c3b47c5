"""Code-request budgets that hold: one per normalised address and one per client network,
counted in the database by default, so they are exact across gunicorn's worker processes
and across nodes (app.ratelimit)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app.models import OutboxMessage
from app.ratelimit import Limit, client_network, parse_limits
from testkit.cluster import GUNICORN, Servers, call
from testkit.tools import require_tool
from testkit.values import SECRET
from testkit.web import request_code

#: one address written seven ways the account lookup takes as the same: case, spaces,
#: full-width letters and full stops in the domain, the ideographic full stop
SAME_ADDRESS = [
    "rl4@acme.test",
    "RL4@ACME.TEST",
    "  rl4@acme.test ",
    "rl4@\uff41cme.test",
    "rl4@acme\u3002test",
    "rl4@ACME.\uff54est",
    "Rl4@Acme\uff0eTest",
]


def test_limits_are_read_from_the_documented_syntax():
    assert parse_limits("5 per 10 minutes;20 per hour") == (Limit(5, 600), Limit(20, 3600))
    assert parse_limits("3/minute, 100 per day") == (Limit(3, 60), Limit(100, 86400))
    assert parse_limits("1 per 2 seconds") == (Limit(1, 2),)
    for wrong in ("", "five per minute", "5 per fortnight", "5 minutes"):
        with pytest.raises(ValueError, match="limit"):
            parse_limits(wrong)


def test_a_bad_limit_setting_stops_the_app_at_start(new_app):
    from app.config import ConfigError

    with pytest.raises(ConfigError, match="HOLDFAST_RATELIMIT_CODES"):
        new_app(RATELIMIT_CODES="lots")


def test_clients_are_counted_by_network():
    assert client_network("203.0.113.7") == "203.0.113.7"
    # One IPv6 subscriber holds a whole /64: every address in it is one client.
    assert client_network("2001:db8:1:2::1") == client_network("2001:db8:1:2:ffff::9")
    assert client_network("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_network("2001:db8:1:3::1") != client_network("2001:db8:1:2::1")
    assert client_network("::ffff:203.0.113.7") == "203.0.113.7"
    assert client_network("fe80::1%eth0") == "fe80::/64"


def test_an_ipv6_network_shares_one_budget(new_app):
    app = new_app(RATELIMIT_CODES_PER_IP="2 per 10 minutes")
    answers = []
    for host in ("::1", "::2", "::3"):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"2001:db8:7:7{host}"
        answers.append(
            client.post("/api/auth/login", json={"email": f"x{len(answers)}@acme.test"}).status_code
        )
    assert answers == [202, 202, 429]
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "2001:db8:7:8::1"
    assert elsewhere.post("/api/auth/login", json={"email": "y@acme.test"}).status_code == 202


def test_one_address_in_any_spelling_has_one_budget(new_app, make, mailbox):
    """The budget's key is the address as the account lookup normalises it: writing it
    another way gets no fresh budget (page and API alike)."""
    app = new_app(RATELIMIT_CODES="5 per 10 minutes")
    services = app.extensions["holdfast"]
    make.user("rl4@acme.test", make.tenant("rl"))
    client = app.test_client()
    answers = []
    for number, spelling in enumerate(SAME_ADDRESS):
        if number % 2:
            answers.append(client.post("/api/auth/login", json={"email": spelling}).status_code)
        else:
            answers.append(request_code(client, spelling).status_code)
    served = [a for a in answers if a in (202, 302)]
    assert len(served) == 5, answers
    assert answers[5:] == [429, 429]
    assert mailbox.count("rl4@acme.test") == 5
    # The window passes: the address may ask again.
    services.clock.advance(minutes=10)
    assert client.post("/api/auth/login", json={"email": "RL4@acme.test"}).status_code == 202


def test_the_fresh_sign_in_page_draws_on_the_same_budget(new_app, make, mailbox):
    from testkit.web import csrf_from, login

    app = new_app(RATELIMIT_CODES="3 per 10 minutes")
    make.user("again@acme.test", make.tenant("ag"))
    client = app.test_client()
    assert login(client, mailbox, "again@acme.test").status_code == 302  # use 1
    api = app.test_client()
    assert api.post("/api/auth/login", json={"email": "again@acme.test"}).status_code == 202
    page = client.get("/login/again")
    sent = client.post("/login/again", data={"send-csrf_token": csrf_from(page.text)})
    assert sent.status_code == 302  # use 3
    page = client.get("/login/again")
    refused = client.post("/login/again", data={"send-csrf_token": csrf_from(page.text)})
    assert refused.status_code == 429
    assert "Too many codes" in refused.text


def codes_queued(services, address: str) -> list[OutboxMessage]:
    with services.session() as db:
        return list(
            db.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.to_address == address, OutboxMessage.kind == "sign_in_code"
                )
            )
        )


def node_settings(database_url: str, smtp_port: int) -> dict[str, str]:
    """A node as installed: the documented default budgets, no Redis."""
    return {
        "HOLDFAST_DATABASE_URL": database_url,
        "HOLDFAST_SECRET_KEY": SECRET,
        "HOLDFAST_MAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        "HOLDFAST_COOKIE_SECURE": "false",
    }


def ask_everywhere(urls: list[str], spellings: list[str], times: int) -> list[int]:
    answers = []
    for number in range(times):
        url = urls[number % len(urls)]
        spelling = spellings[number % len(spellings)]
        answers.append(call(f"{url}/api/auth/login", "POST", json_body={"email": spelling}).status)
    return answers


def test_the_default_budget_is_exact_across_four_workers(
    servers: Servers, database_url, smtp_server, services, make, mailbox
):
    """Ten requests for one address, in equivalent spellings, spread by the kernel over a
    node's four worker processes: exactly the documented five codes (counted in the
    database, which every worker shares; not in each worker's memory)."""
    require_tool(str(GUNICORN), "the node runs under gunicorn")
    make.user("rl4@acme.test", make.tenant("rl"))
    node = servers.node(node_settings(database_url, smtp_server[1]), workers=4)
    assert len(node.worker_pids()) == 4
    answers = ask_everywhere([node.url], SAME_ADDRESS, 10)
    assert answers.count(202) == 5 and answers.count(429) == 5, (answers, servers.logs())
    mailbox.wait_for("rl4@acme.test", 5, timeout=15)
    queued = codes_queued(services, "rl4@acme.test")
    assert len(queued) == 5


def test_the_default_budget_is_exact_across_two_nodes(
    servers: Servers, database_url, smtp_server, services, make, mailbox
):
    require_tool(str(GUNICORN), "the nodes run under gunicorn")
    make.user("rl4@acme.test", make.tenant("rl"))
    settings = node_settings(database_url, smtp_server[1])
    a = servers.node(settings, label="a", workers=2)
    b = servers.node(settings, label="b", workers=2)
    answers = ask_everywhere([a.url, b.url], SAME_ADDRESS, 10)
    assert answers.count(202) == 5 and answers.count(429) == 5, (answers, servers.logs())
    mailbox.wait_for("rl4@acme.test", 5, timeout=15)
    assert len(codes_queued(services, "rl4@acme.test")) == 5
    # And the counters are rows every node reads.
    refused = call(f"{b.url}/api/auth/login", "POST", json_body={"email": "rl4@acme.test"})
    assert refused.status == 429
    assert 0 < int(refused.headers["retry-after"]) <= int(timedelta(minutes=10).total_seconds())


def test_old_counters_are_purged(new_app, make):
    from app.core import retention
    from app.models import RateCounter

    app = new_app()
    services = app.extensions["holdfast"]
    client = app.test_client()
    assert client.post("/api/auth/login", json={"email": "p@acme.test"}).status_code == 202
    with services.session() as db:
        assert db.scalars(select(RateCounter)).all()
    done = retention.purge(
        lambda: services.session(write=True), now=services.clock.now() + timedelta(days=2)
    )
    assert done.rate_counters == 2  # the address's and the network's
    with services.session() as db:
        assert db.scalars(select(RateCounter)).all() == []


# --- checking codes (issue 21, findings 1 and 4) ---------------------------------------------


def test_every_code_check_draws_on_the_check_budgets(new_app, make, mailbox):
    """Emailed codes over the API, then over the page, for one address: the address's
    check budget (5) runs out whichever way the codes come; nothing past it is checked."""
    from testkit.web import csrf_from

    app = new_app(RATELIMIT_CHECKS="5 per 10 minutes")
    make.user("ck@acme.test", make.tenant("ck"))
    api = app.test_client()
    asked = api.post("/api/auth/login", json={"email": "ck@acme.test"}).json
    answers = [
        api.post(
            "/api/auth/verify", json={"challengeId": asked["challengeId"], "code": "000000"}
        ).status_code
        for _ in range(3)
    ]
    assert answers == [400, 400, 400]
    page = app.test_client()
    assert request_code(page, "ck@acme.test").status_code == 302
    code = mailbox.last_code("ck@acme.test", mailbox.count("ck@acme.test"))
    for expected in (200, 200):  # two more wrong codes: the form again, with the reason
        form = page.get("/login/code")
        wrong = page.post(
            "/login/code", data={"code": "000000", "csrf_token": csrf_from(form.text)}
        )
        assert wrong.status_code == expected
    form = page.get("/login/code")
    refused = page.post("/login/code", data={"code": code, "csrf_token": csrf_from(form.text)})
    assert refused.status_code == 429  # even the right code: the budget is spent
    assert int(refused.headers["Retry-After"]) > 0
    assert "Too many codes were tried" in refused.text


def test_a_stale_session_cannot_guess_its_way_to_a_fresh_one(new_app, make, mailbox):
    """Finding 1: /login/again sends codes on the address's code budget and checks them
    on its check budget, like the sign-in page."""
    from testkit.web import csrf_from, login

    app = new_app(RATELIMIT_CODES="3 per 10 minutes", RATELIMIT_CHECKS="6 per 10 minutes")
    services = app.extensions["holdfast"]
    tenant = make.tenant("stale")
    make.user("boss@stale.test", tenant, role="admin")
    browser = app.test_client()
    assert login(browser, mailbox, "boss@stale.test").status_code == 302  # code 1, check 1
    services.clock.advance(minutes=20)  # no longer fresh
    assert browser.get("/admin").status_code == 302

    def send() -> int:
        page = browser.get("/login/again")
        return browser.post(
            "/login/again", data={"send-csrf_token": csrf_from(page.text)}
        ).status_code

    def guess(code: str) -> int:
        page = browser.get("/login/again")
        return browser.post(
            "/login/again", data={"code": code, "csrf_token": csrf_from(page.text)}
        ).status_code

    assert [send(), send(), send()] == [302, 302, 302]  # a new window since the sign-in
    assert send() == 429  # the address's fourth code in ten minutes
    guesses = [guess(f"{n:06d}") for n in range(7)]
    # Five wrong codes, each told so, then the code is dead (six checks in this window) ...
    assert guesses[:6] == [200] * 6
    assert guesses[6] == 429  # ... and the seventh check is refused without a look
    assert browser.get("/admin").status_code == 302  # still not fresh


def test_wrong_app_codes_draw_on_the_budget_and_one_second_step_is_open(
    new_app, make, mailbox, clock
):
    """The app's code is checked on the same budgets, and a new second step replaces the
    person's earlier open one (so its five tries are all there are)."""
    import pyotp

    from app.core import events, mfa, totp
    from app.models import MfaChallenge, User
    from testkit.api import api_sign_in

    app = new_app(RATELIMIT_CHECKS="4 per 10 minutes")
    services = app.extensions["holdfast"]
    person = make.user("two@acme.test", make.tenant("two"))
    with services.session(write=True) as db:
        user = db.get_one(User, person.id)
        user.totp_secret = totp._seal(services.hasher, user.id, pyotp.random_base32())
        user.totp_enabled_at = clock.now()
        mfa.make_recovery_codes(db, services.hasher, user, now=clock.now(), origin=events.SYSTEM)
        db.commit()
    client = app.test_client()
    first = api_sign_in(client, mailbox, person.email).json  # check 1
    second = api_sign_in(client, mailbox, person.email).json  # check 2
    assert first["code"] == second["code"] == "mfa_required"
    stale = client.post(
        "/api/auth/verify/mfa", json={"mfaChallengeId": first["mfaChallengeId"], "code": "0"}
    )
    assert stale.status_code == 400 and "ended" in stale.json["error"]  # replaced
    with services.session() as db:
        open_steps = db.scalars(select(MfaChallenge).where(MfaChallenge.consumed_at.is_(None)))
        assert [step.id for step in open_steps] == [second["mfaChallengeId"]]
    answers = [
        client.post(
            "/api/auth/verify/mfa",
            json={"mfaChallengeId": second["mfaChallengeId"], "code": "000000"},
        ).status_code
        for _ in range(3)
    ]
    assert answers == [400, 400, 429]  # checks 3 and 4, then the budget is spent


def test_a_slowed_address_is_slowed_at_the_fresh_sign_in_too(new_app, make, mailbox):
    from app.models import CodeSlowdown
    from testkit.web import csrf_from, login

    app = new_app()
    services = app.extensions["holdfast"]
    make.user("boss@slow.test", make.tenant("slow"), role="admin")
    browser = app.test_client()
    assert login(browser, mailbox, "boss@slow.test").status_code == 302
    services.clock.advance(minutes=20)
    page = browser.get("/login/again")
    assert (
        browser.post("/login/again", data={"send-csrf_token": csrf_from(page.text)}).status_code
        == 302
    )
    code = mailbox.last_code("boss@slow.test", mailbox.count("boss@slow.test"))
    with services.session(write=True) as db:  # someone guessed a hundred codes meanwhile
        db.merge(
            CodeSlowdown(
                key=services.hasher.hash("code slow-down", "boss@slow.test"),
                failures=100,
                checks_after=services.clock.now() + timedelta(seconds=30),
                updated_at=services.clock.now(),
            )
        )
        db.commit()
    page = browser.get("/login/again")
    refused = browser.post("/login/again", data={"code": code, "csrf_token": csrf_from(page.text)})
    assert refused.status_code == 429
    assert "Too many wrong codes were entered for this address" in refused.text
    services.clock.advance(seconds=31)
    page = browser.get("/login/again")
    fresh = browser.post("/login/again", data={"code": code, "csrf_token": csrf_from(page.text)})
    assert fresh.status_code == 302
    assert browser.get("/admin").status_code == 200
