"""People pages over HTTP: list and search, add (invitation email), a person's page,
role changes, disable / enable, stop trusting devices, end all sessions, last-admin rule."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.mail import plain_text
from app.models import Device, User
from testkit.mail import outbox_drained
from testkit.rows import add_session, events_of, session_row, user_row
from testkit.values import START, UA_IPAD
from testkit.web import csrf_from, session_id_of, sign_in


def post(client, url, page_url, **data):
    """Submit a form on ``page_url`` the way the browser would (CSRF token included)."""
    token = csrf_from(client.get(page_url).text)
    return client.post(url, data={"csrf_token": token, **data})


def test_people_list_search_and_pages(admin_client, make, tenant, member, services, admin):
    for n in range(55):
        make.user(f"p{n:02d}@acme.test", tenant)
    make.user("zed@acme.test", tenant, name="Zed Quill")
    add_session(
        services,
        tenant,
        member,
        created=START - timedelta(hours=1),
        last_seen=START - timedelta(minutes=1),
    )

    first = admin_client.get("/admin/users")
    assert first.status_code == 200
    emails = re.findall(
        r'<tr id="person-usr_[^"]+"[^>]*>\s*<td class="who"><a [^>]+>([^<]+)</a>', first.text
    )
    assert emails[:3] == ["ada@acme.test", "p00@acme.test", "p01@acme.test"]
    assert len(emails) == 50
    admin_row = first.text[first.text.index(f'id="person-{admin.id}"') :]
    assert '<mark class="badge admin">Admin</mark>' in admin_row[: admin_row.index("</tr>")]
    next_url = re.search(r'href="([^"]+)" rel="next"', first.text).group(1).replace("&amp;", "&")
    second = admin_client.get(next_url)
    rest = re.findall(r'<td class="who"><a [^>]+>([^<]+)</a>', second.text)
    assert rest == [f"p{n}@acme.test" for n in range(49, 55)] + ["sam@acme.test", "zed@acme.test"]
    # sam's live session count links to the explorer, filtered to them
    assert f'href="/admin/sessions?status=live&amp;user={member.id}">1</a>' in second.text

    found = admin_client.get("/admin/users?q=quill")
    assert re.findall(r'<td class="who"><a [^>]+>([^<]+)</a>', found.text) == ["zed@acme.test"]
    assert "Nobody matches" in admin_client.get("/admin/users?q=nobody-at-all").text


def test_add_a_person_emails_an_invitation_they_can_use(
    app, admin_client, mailbox, services, admin, tenant
):
    answer = post(
        admin_client,
        "/admin/users",
        "/admin/users",
        email="New.Person@Acme.test",
        name="  New   Person ",
        role="admin",
    )

    assert answer.status_code == 302
    with services.session() as db:
        added = db.scalars(select(User).where(User.email == "new.person@acme.test")).one()
    assert answer.location == f"/admin/users/{added.id}"
    assert (added.role, added.name, added.tenant_id) == ("admin", "New Person", tenant.id)
    [event] = events_of(services, "user.created", subject_id=added.id)
    assert event.actor_id == admin.id and event.details["role"] == "admin"
    [mail] = mailbox.wait_for("new.person@acme.test")
    body = plain_text(mail)
    assert "ada@acme.test added you to Acme" in body
    assert "http://localhost/login" in body
    assert "Added new.person@acme.test." in admin_client.get(answer.location).text
    # The invitation works: they sign in with the emailed code, as an admin.
    newcomer = sign_in(app, mailbox, "new.person@acme.test")
    assert newcomer.get("/admin").status_code == 200


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("not-an-email", "That is not a valid email address"),
        ("ada@acme.test", "ada@acme.test is in Acme already."),
        ("", "Enter their email address."),
    ],
)
def test_add_a_person_says_what_is_wrong(admin_client, services, admin, email, message):
    answer = post(admin_client, "/admin/users", "/admin/users", email=email, role="member")
    assert answer.status_code == 422
    assert message in answer.text
    assert events_of(services, "user.created", actor_id=admin.id) == []


def test_a_person_page_shows_devices_live_sessions_and_30_days_of_history(
    admin_client, services, tenant, member
):
    day = timedelta(days=1)
    live = add_session(
        services,
        tenant,
        member,
        created=START - timedelta(hours=1),
        last_seen=START - timedelta(minutes=2),
        kind="phone",
        os="iOS",
        browser="Safari",
        device_name="Sam's phone",
        trusted_until=START + 20 * day,
    )
    recent = add_session(
        services,
        tenant,
        member,
        created=START - 10 * day,
        ended=START - 10 * day + timedelta(hours=1),
        reason="revoked_by_user",
    )
    expired = add_session(
        services, tenant, member, created=START - 2 * day, last_seen=START - 2 * day
    )  # past its deadline, not marked yet
    too_old = add_session(
        services, tenant, member, created=START - 40 * day, ended=START - 40 * day, reason="logout"
    )

    page = admin_client.get(f"/admin/users/{member.id}")

    assert page.status_code == 200
    html = page.text
    assert f'id="live-{live}"' in html
    assert "Sam&#39;s phone" in html and "Trusted" in html and "Not trusted" in html
    assert f'id="history-{recent}"' in html and "Ended by the person" in html
    assert f'id="history-{expired}"' in html and "Idle timeout" in html
    assert too_old not in html
    assert html.count('id="device-') == 4


def test_role_change_takes_effect_on_the_very_next_request(
    app, admin_client, mailbox, services, member, admin
):
    colleague = sign_in(app, mailbox, member.email)
    assert colleague.get("/admin").status_code == 403

    made = post(
        admin_client, f"/admin/users/{member.id}/role", f"/admin/users/{member.id}", role="admin"
    )
    assert made.status_code == 302
    assert user_row(services, member.id).role == "admin"
    assert colleague.get("/admin").status_code == 200  # no new token needed
    [event] = events_of(services, "user.role_changed")
    assert (event.actor_id, event.subject_id) == (admin.id, member.id)
    assert (event.details["old"], event.details["new"]) == ("member", "admin")

    post(admin_client, f"/admin/users/{member.id}/role", f"/admin/users/{member.id}", role="member")
    assert colleague.get("/admin").status_code == 403  # no stale admin token either
    assert colleague.get("/admin/sessions").status_code == 403


def test_the_last_admin_cannot_step_down_or_be_disabled(
    app, admin_client, mailbox, services, admin, make, tenant
):
    page = f"/admin/users/{admin.id}"
    refused = post(admin_client, f"/admin/users/{admin.id}/role", page, role="member")
    assert refused.status_code == 302
    assert "A tenant needs at least one admin" in admin_client.get(page).text
    assert user_row(services, admin.id).role == "admin"
    assert events_of(services, "user.role_changed") == []

    own = post(admin_client, f"/admin/users/{admin.id}/disable", page)
    assert own.status_code == 302
    assert "You cannot disable your own account" in admin_client.get(page).text
    assert user_row(services, admin.id).disabled is False

    # With a second admin, one may step down; then that one is the last.
    second = make.user("second@acme.test", tenant, role="admin")
    post(admin_client, f"/admin/users/{admin.id}/role", page, role="member")
    assert user_row(services, admin.id).role == "member"
    assert admin_client.get("/admin").status_code == 403
    other = sign_in(app, mailbox, second.email)
    post(other, f"/admin/users/{second.id}/role", f"/admin/users/{second.id}", role="member")
    assert user_row(services, second.id).role == "admin"


def test_disable_ends_every_session_at_once_and_enable_lets_them_back(
    app, admin_client, mailbox, services, clock, member, admin
):
    desk = sign_in(app, mailbox, member.email)
    ipad = sign_in(app, mailbox, member.email, user_agent=UA_IPAD)
    ids = {session_id_of(desk, services, clock), session_id_of(ipad, services, clock)}

    answer = post(admin_client, f"/admin/users/{member.id}/disable", f"/admin/users/{member.id}")

    assert answer.status_code == 302
    page = admin_client.get(answer.location).text
    assert "Disabled. 2 sessions ended" in page and 'id="disabled-badge"' in page
    assert user_row(services, member.id).disabled is True
    for session_id in ids:
        stored = session_row(services, session_id)
        assert (stored.end_reason, stored.ended_at) == ("revoked_by_admin", START)
    [disabled] = events_of(services, "user.disabled")
    assert (disabled.actor_id, disabled.subject_id) == (admin.id, member.id)
    ended = events_of(services, "session.ended", subject_id=member.id)
    assert {e.session_id for e in ended} == ids and {e.actor_id for e in ended} == {admin.id}
    assert desk.get("/devices").status_code == 302
    before = mailbox.count(member.email)
    refused = app.test_client()
    page = refused.get("/login")
    refused.post("/login", data={"email": member.email, "csrf_token": csrf_from(page.text)})
    outbox_drained(services)
    assert mailbox.count(member.email) == before  # no code for a disabled account

    enabled = post(admin_client, f"/admin/users/{member.id}/enable", f"/admin/users/{member.id}")
    assert enabled.status_code == 302
    assert user_row(services, member.id).disabled is False
    [event] = events_of(services, "user.enabled")
    assert event.actor_id == admin.id
    assert sign_in(app, mailbox, member.email).get("/devices").status_code == 200


def test_end_all_sessions_of_a_person(app, admin_client, mailbox, services, clock, member, admin):
    desk = sign_in(app, mailbox, member.email)
    ipad = sign_in(app, mailbox, member.email, user_agent=UA_IPAD)

    answer = post(
        admin_client, f"/admin/users/{member.id}/end-sessions", f"/admin/users/{member.id}"
    )

    assert answer.status_code == 302
    assert "Ended 2 sessions." in admin_client.get(answer.location).text
    [event] = events_of(services, "user.sessions_ended")
    assert (event.actor_id, event.subject_id, event.details["count"]) == (admin.id, member.id, 2)
    for client in (desk, ipad):
        assert client.get("/devices").location.startswith("/login?reason=revoked_by_admin")
    assert user_row(services, member.id).disabled is False  # they may sign in again


def test_stop_trusting_all_devices(app, mailbox, services, clock, member, admin):
    """Losing trust signs nobody out on the spot: a session idle for an hour on a trusted
    device (8-hour trusted idle timeout) keeps running, and from then on gets the ordinary
    30-minute idle timeout, counted from the moment trust ended."""
    desk = sign_in(app, mailbox, member.email, trust=True)
    sign_in(app, mailbox, member.email, user_agent=UA_IPAD, trust=True)
    with services.session() as db:
        assert all(
            d.trusted_until for d in db.scalars(select(Device).where(Device.user_id == member.id))
        )
    clock.advance(hours=1)
    admin_client = sign_in(app, mailbox, admin.email)
    person_page = admin_client.get(f"/admin/users/{member.id}").text
    assert "2 trusted devices. Stopping trust signs nobody out" in person_page
    assert "end after 30 minutes without use (instead of 8 hours)" in person_page

    answer = post(
        admin_client, f"/admin/users/{member.id}/untrust-devices", f"/admin/users/{member.id}"
    )

    assert answer.status_code == 302
    assert (
        "Stopped trusting 2 devices. Nobody was signed out."
        in admin_client.get(answer.location).text
    )
    with services.session() as db:
        devices = db.scalars(select(Device).where(Device.user_id == member.id)).all()
        assert [d.trusted_until for d in devices] == [clock.now(), clock.now()]
    [event] = events_of(services, "devices.untrusted")
    assert (event.actor_id, event.subject_id, event.details["count"]) == (admin.id, member.id, 2)
    # Idle for an hour, yet still signed in: the ordinary idle timeout counts from now.
    assert desk.get("/devices").status_code == 200
    clock.advance(minutes=31)
    assert desk.get("/devices").location.startswith("/login?reason=idle")


def test_person_actions_need_the_form_token(admin_client, services, member):
    answer = admin_client.post(f"/admin/users/{member.id}/disable")
    assert answer.status_code == 400
    assert user_row(services, member.id).disabled is False


def test_unknown_person_is_not_found(admin_client):
    assert admin_client.get("/admin/users/usr_nobody").status_code == 404
    answer = post(admin_client, "/admin/users/usr_nobody/disable", "/admin/users")
    assert answer.status_code == 404
