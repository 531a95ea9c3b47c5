"""One address, accounts in several organisations (issue 21, finding 8): adding a person
never tells one tenant about another's members, no tenant can take an address another
needs, and a person in two organisations picks one after the emailed code (pages and
API), each account keeping its own sessions, devices, limits and data."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from app.core import accounts
from app.models import CodeSlowdown, Event, User, UserSession
from testkit.api import ask_code, assert_error, bearer
from testkit.values import UA_IPAD
from testkit.web import csrf_from, login, request_code, session_id_of

MARGE = "marge@globex.example"


@pytest.fixture
def globex(make):
    return make.tenant("globex")


def add_person(client, email, role="member"):
    page = client.get("/admin/users")
    return client.post(
        "/admin/users",
        data={"email": email, "role": role, "csrf_token": csrf_from(page.text)},
    )


def test_adding_someone_of_another_tenant_tells_nothing_and_takes_nothing(
    admin_client, make, globex, tenant, services
):
    """It used to answer "marge@globex.example has an account already": one tenant's
    admin learnt another's members, and the first tenant to add an address kept it."""
    globex_marge = make.user(MARGE, globex)
    answer = add_person(admin_client, MARGE)
    assert answer.status_code == 302, answer.text
    assert "globex" not in admin_client.get(answer.location).text.lower().replace(MARGE, "")
    with services.session() as db:
        rows = db.scalars(
            select(User).where(User.email == MARGE).execution_options(all_tenants=True)
        ).all()
        assert {(u.tenant_id, u.id == globex_marge.id) for u in rows} == {
            (globex.id, True),
            (tenant.id, False),
        }
    # The same address twice in one tenant is the only refusal, and names that tenant.
    again = add_person(admin_client, MARGE)
    assert again.status_code == 422 and f"{MARGE} is in Acme already." in again.text
    # The answer for an address nobody has and for one another tenant has is the same.
    fresh = add_person(admin_client, "newcomer@globex.example")
    assert fresh.status_code == answer.status_code == 302


def test_a_tenant_that_was_first_cannot_squat_an_address(make, globex, tenant, services, clock):
    """acme adds an address before globex, whose employee it is: globex still can."""
    make.user(MARGE, tenant)
    with services.session(write=True) as db:
        added = accounts.add_user(db, db.get_one(type(globex), globex.id), MARGE, now=clock.now())
        db.commit()
    assert added.tenant_id == globex.id


@pytest.fixture
def two_accounts(make, tenant, globex):
    """Marge in Acme (a member) and in Globex (an admin)."""
    return make.user(MARGE, tenant), make.user(MARGE, globex, role="admin")


def test_one_code_then_the_person_picks_the_organisation(
    client, mailbox, two_accounts, tenant, globex, services, clock
):
    acme_marge, globex_marge = two_accounts
    assert request_code(client, MARGE).status_code == 302
    assert len(mailbox.wait_for(MARGE)) == 1  # one mail for the address
    code = mailbox.last_code(MARGE)
    form = client.get("/login/code")
    picker = client.post("/login/code", data={"code": code, "csrf_token": csrf_from(form.text)})
    assert picker.status_code == 409
    assert "belongs to more than one organisation" in picker.text
    buttons = dict(re.findall(r'name="tenant" value="([^"]+)"[^>]*>([^<]+)<', picker.text))
    assert buttons == {tenant.id: "Acme", globex.id: "Globex"}
    assert client.get_cookie("holdfast_session") is None
    with services.session() as db:  # not used up until the choice
        assert db.scalar(select(func.count()).select_from(UserSession)) == 0

    # A tenant that is not one of the address's is asked again.
    other = client.post(
        "/login/code",
        data={"code": code, "tenant": "ten_not-hers", "csrf_token": csrf_from(picker.text)},
    )
    assert other.status_code == 409 and "that one is not among them" in other.text

    chosen = client.post(
        "/login/code",
        data={"code": code, "tenant": globex.id, "csrf_token": csrf_from(picker.text)},
    )
    assert chosen.status_code == 302 and chosen.location == "/devices"
    claims = services.keys.verify(client.get_cookie("holdfast_session").value, clock.now())
    assert (claims.user_id, claims.tenant_id) == (globex_marge.id, globex.id)
    assert client.get("/admin").status_code == 200  # her Globex role
    with services.session() as db:
        requested = db.scalars(select(Event).where(Event.kind == "code.requested")).all()
        assert {(e.tenant_id, e.subject_id) for e in requested} == {
            (tenant.id, acme_marge.id),
            (globex.id, globex_marge.id),
        }


def test_wrong_codes_count_once_for_the_address_and_audit_each_account(
    client, mailbox, two_accounts, tenant, globex, services
):
    acme_marge, globex_marge = two_accounts
    request_code(client, MARGE)
    code = mailbox.last_code(MARGE)
    form = client.get("/login/code")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    answer = client.post("/login/code", data={"code": wrong, "csrf_token": csrf_from(form.text)})
    assert "4 tries left" in answer.text
    with services.session() as db:
        failed = db.scalars(select(Event).where(Event.kind == "code.failed")).all()
        assert {(e.tenant_id, e.subject_id) for e in failed} == {
            (tenant.id, acme_marge.id),
            (globex.id, globex_marge.id),
        }
        # One wrong code for the address (the slow-down's count), however many accounts.
        run = db.get(CodeSlowdown, services.hasher.hash("code slow-down", MARGE))
        assert run.failures == 1


def test_a_disabled_account_is_not_offered(client, mailbox, two_accounts, make, tenant, services):
    acme_marge, _globex_marge = two_accounts
    with services.session(write=True) as db:
        db.get_one(User, _globex_marge.id).disabled = True
        db.commit()
    assert login(client, mailbox, MARGE).location == "/devices"  # no picker: one account
    assert session_id_of(client, services, services.clock)  # signed in
    claims = services.keys.verify(client.get_cookie("holdfast_session").value, services.clock.now())
    assert claims.user_id == acme_marge.id


def test_the_api_answers_the_tenants_and_takes_tenant_id(
    client, mailbox, two_accounts, tenant, globex, services, clock
):
    acme_marge, _globex_marge = two_accounts
    challenge, code = ask_code(client, mailbox, MARGE)
    body = {"challengeId": challenge, "code": code}
    choose = assert_error(client.post("/api/auth/verify", json=body), 409, "tenant_choice_required")
    assert choose["tenants"] == [
        {"id": tenant.id, "slug": "acme", "name": "Acme"},
        {"id": globex.id, "slug": "globex", "name": "Globex"},
    ]
    signed = client.post("/api/auth/verify", json={**body, "tenantId": tenant.id})
    assert signed.status_code == 201, signed.text
    claims = services.keys.verify(signed.json["token"], clock.now())
    assert (claims.user_id, claims.tenant_id) == (acme_marge.id, tenant.id)
    assert client.get("/api/auth/sessions", headers=bearer(signed.json["token"])).status_code == 200


def test_each_account_keeps_its_own_sessions_devices_and_erasure(
    app, mailbox, two_accounts, tenant, globex, make, services, clock
):
    """The same browser in both organisations is a device of each account; the Acme
    admin erasing Acme's Marge leaves Globex's Marge, her sessions and her codes alone."""
    acme_marge, globex_marge = two_accounts
    browser = app.test_client()
    for chosen in (tenant.id, globex.id):
        browser.delete_cookie("holdfast_session")  # the same browser (its device cookie kept)
        before = mailbox.count(MARGE)
        request_code(browser, MARGE, **{"User-Agent": UA_IPAD})
        code = mailbox.last_code(MARGE, before + 1)
        form = browser.get("/login/code")
        signed = browser.post(
            "/login/code",
            data={"code": code, "tenant": chosen, "csrf_token": csrf_from(form.text)},
            headers={"User-Agent": UA_IPAD},
        )
        assert signed.status_code == 302
    with services.session() as db:
        sessions = db.scalars(select(UserSession)).all()
        assert {s.user_id for s in sessions} == {acme_marge.id, globex_marge.id}
        assert len({s.device_id for s in sessions}) == 2  # one device row per account

    boss = make.user("boss@acme.test", tenant, role="admin")
    admin = app.test_client()
    login(admin, mailbox, boss.email)
    page = admin.get(f"/admin/users/{acme_marge.id}/erase")
    erased = admin.post(
        f"/admin/users/{acme_marge.id}/erase",
        data={"csrf_token": csrf_from(page.text), "confirm": MARGE},
    )
    assert erased.status_code == 200 and "erased" in erased.text.lower(), erased.text
    with services.session() as db:
        left = db.scalars(
            select(User).where(User.email == MARGE).execution_options(all_tenants=True)
        ).all()
        assert [u.id for u in left] == [globex_marge.id]
        live = db.scalars(select(UserSession).where(UserSession.ended_at.is_(None))).all()
        assert {s.user_id for s in live} >= {globex_marge.id}
        assert acme_marge.id not in {s.user_id for s in live}
    # She still signs in to Globex, now without a picker.
    assert login(app.test_client(), mailbox, MARGE).location == "/devices"
