"""The sessions explorer over HTTP: every filter, sorting, keyset pages, and ending one or
the selected sessions (htmx rows in place, plain forms without JavaScript)."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from testkit.rows import add_session, events_of, session_row
from testkit.values import START
from testkit.web import HTMX, csrf_from, session_id_of, sign_in

ROW = re.compile(r'<tr id="row-(sess_[^"]+)"')


def rows(html: str) -> list[str]:
    return ROW.findall(html)


@pytest.fixture
def crowd(services, tenant, member, make):
    """Sessions with different people, devices, addresses and times (ids by name)."""
    ana = make.user("ana@acme.test", tenant)
    minute = timedelta(minutes=1)
    return {
        "phone": add_session(
            services,
            tenant,
            member,
            created=START - timedelta(hours=3),
            last_seen=START - 2 * minute,
            kind="phone",
            os="iOS",
            browser="Safari",
            device_name="Sam's iPhone",
            ip="192.0.2.10",
            location="Lisbon, PT",
        ),
        "laptop": add_session(
            services,
            tenant,
            member,
            created=START - timedelta(hours=1),
            last_seen=START - 10 * minute,
            kind="desktop",
            os="Windows",
            browser="Edge",
            ip="198.51.100.7",
        ),
        "ana": add_session(
            services,
            tenant,
            ana,
            created=START - timedelta(days=2),
            last_seen=START - 5 * minute,
            kind="tablet",
            os="iOS",
            browser="Safari",
            ip="192.0.2.99",
            trusted_until=START + timedelta(days=9),
            lifetime=timedelta(days=10),
        ),
        "old": add_session(
            services,
            tenant,
            ana,
            created=START - timedelta(days=3),
            ended=START - timedelta(days=3, hours=-2),
            reason="logout",
            kind="desktop",
            os="Linux",
            browser="Firefox",
            ip="203.0.113.5",
        ),
        "idle": add_session(
            services,
            tenant,
            member,
            created=START - timedelta(days=1),
            last_seen=START - timedelta(hours=20),
            kind="phone",
            os="Android",
            browser="Chrome",
            ip="192.0.2.55",
        ),
    }


def test_explorer_shows_live_sessions_most_recently_active_first(admin_client, crowd, admin):
    page = admin_client.get("/admin/sessions")
    assert page.status_code == 200
    shown = rows(page.text)
    # Live only by default: the admin's own (active now), phone, ana's tablet, laptop.
    assert shown[1:] == [crowd["phone"], crowd["ana"], crowd["laptop"]]
    row = page.text[page.text.index(f'id="row-{crowd["phone"]}"') :]
    row = row[: row.index("</tr>")]
    for text in (
        "sam@acme.test",
        "Sam&#39;s iPhone",
        "Phone",
        "iOS",
        "Safari",
        "192.0.2.10",
        "Lisbon, PT",
        "Live",
        # the button's name says whose session on which device it ends
        "> the session of sam@acme.test on Sam&#39;s iPhone</span></button>",
    ):
        assert text in row, text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=ended", ["idle", "old"]),
        ("status=all&kind=phone", ["phone", "idle"]),
        ("status=all&os=iOS", ["phone", "ana"]),
        ("status=all&browser=Safari", ["phone", "ana"]),
        ("status=all&ip=192.0.2.", ["phone", "ana", "idle"]),
        ("status=all&q=ana@", ["ana", "old"]),
        ("status=all&q=iphone", ["phone"]),
        ("status=all&from=2026-02-27&to=2026-02-28", ["ana", "old"]),
        ("status=all&from=2026-03-01&kind=phone&sort=signed_in", ["phone", "idle"]),
        ("status=all&to=2026-02-27&sort=signed_in", ["old"]),
        ("status=live&sort=signed_in&kind=phone", ["phone"]),
    ],
)
def test_each_filter(admin_client, crowd, query, expected):
    page = admin_client.get(f"/admin/sessions?{query}")
    assert page.status_code == 200
    assert rows(page.text) == [crowd[name] for name in expected]
    # The filter state is in the form, so the page can be shared and refined.
    for name, values in parse_qs(query).items():
        if name in ("q", "os", "browser", "ip", "from", "to"):
            assert f'value="{values[0]}"' in page.text


def test_filter_by_person_shows_a_removable_chip(admin_client, crowd, member):
    page = admin_client.get(f"/admin/sessions?status=all&user={member.id}")
    assert set(rows(page.text)) == {crowd["phone"], crowd["laptop"], crowd["idle"]}
    assert "Person: <a" in page.text and member.email in page.text
    assert 'href="/admin/sessions?status=all"' in page.text  # the chip's remove link


def test_bad_filters_say_what_is_wrong(admin_client, crowd):
    for query, message in [
        ("status=sideways", "status is one of live, ended, all."),
        ("from=yesterday", "Dates are written YYYY-MM-DD."),
        ("kind=toaster", "kind is one of"),
        ("sort=random", "sort is one of"),
        ("cursor=not-a-cursor", "That page cursor is not valid."),
    ]:
        page = admin_client.get(f"/admin/sessions?{query}")
        assert page.status_code == 422, query
        assert message in page.text, query
        assert rows(page.text) == []


def test_keyset_pages_carry_the_cursor_and_filters(admin_client, services, tenant, member):
    made = [
        add_session(
            services,
            tenant,
            member,
            created=START - timedelta(hours=2),
            last_seen=START - timedelta(seconds=10 * n),
            kind="phone",
        )
        for n in range(1, 61)
    ]
    first = admin_client.get("/admin/sessions?kind=phone")
    assert rows(first.text) == made[:50]
    next_url = re.search(r'href="([^"]+)" rel="next"', first.text).group(1).replace("&amp;", "&")
    query = parse_qs(urlsplit(next_url).query)
    assert query["kind"] == ["phone"] and query["cursor"]

    second = admin_client.get(next_url)
    assert rows(second.text) == made[50:]
    assert 'rel="next"' not in second.text
    assert "First page" in second.text
    # A new session arriving between pages does not shift the second page.
    add_session(services, tenant, member, created=START, last_seen=START, kind="phone")
    assert rows(admin_client.get(next_url).text) == made[50:]


def test_end_one_with_htmx_answers_its_row_in_place(
    app, admin_client, mailbox, services, clock, member, admin
):
    browser = sign_in(app, mailbox, member.email)
    target = session_id_of(browser, services, clock)
    page = admin_client.get("/admin/sessions")

    answer = admin_client.post(
        f"/admin/sessions/{target}/end", headers={**HTMX, "X-CSRFToken": csrf_from(page.text)}
    )

    assert answer.status_code == 200
    assert answer.text.lstrip().startswith(f'<tr id="row-{target}"')
    assert "<html" not in answer.text
    assert "Ended by an admin" in answer.text
    assert 'name="session"' not in answer.text  # nothing left to select or end
    assert "HX-Request" in answer.headers["Vary"]
    stored = session_row(services, target)
    assert stored.end_reason == "revoked_by_admin" and stored.ended_at == START
    [event] = events_of(services, "session.ended", session_id=target)
    assert event.actor_id == admin.id and event.subject_id == member.id
    # The member's next request lands on the sign-in page with the reason.
    bounced = browser.get("/devices")
    assert bounced.location.startswith("/login?reason=revoked_by_admin")


def test_end_one_without_javascript_goes_back_to_the_filtered_explorer(
    admin_client, services, crowd
):
    back = "/admin/sessions?status=all&kind=phone"
    page = admin_client.get(back)
    answer = admin_client.post(
        f"/admin/sessions/{crowd['phone']}/end",
        data={"csrf_token": csrf_from(page.text), "back": back},
    )
    assert answer.status_code == 302 and answer.location == back
    assert "Session ended." in admin_client.get(back).text
    assert session_row(services, crowd["phone"]).end_reason == "revoked_by_admin"
    # "back" never leads outside the admin pages.
    evil = admin_client.post(
        f"/admin/sessions/{crowd['laptop']}/end",
        data={"csrf_token": csrf_from(page.text), "back": "https://evil.test/admin"},
    )
    assert evil.location == "/admin/sessions"


def test_end_selected_with_htmx_swaps_every_row_out_of_band(
    admin_client, services, crowd, admin, member
):
    page = admin_client.get("/admin/sessions")
    token = csrf_from(page.text)
    answer = admin_client.post(
        "/admin/sessions/end",
        data={"csrf_token": token, "session": [crowd["phone"], crowd["ana"]]},
        headers=HTMX,
    )
    assert answer.status_code == 200
    assert "Ended 2 sessions." in answer.text
    swapped = re.findall(
        r'<template>\s*<tr id="row-(sess_[^"]+)"[^>]*hx-swap-oob="true"', answer.text
    )
    assert swapped == [crowd["phone"], crowd["ana"]]
    for name in ("phone", "ana"):
        assert session_row(services, crowd[name]).end_reason == "revoked_by_admin"
    assert session_row(services, crowd["laptop"]).ended_at is None
    ended = events_of(services, "session.ended", actor_id=admin.id)
    assert {e.session_id for e in ended} == {crowd["phone"], crowd["ana"]}


def test_end_selected_is_all_or_nothing(admin_client, services, crowd, make):
    other = make.tenant("globex")
    stranger = make.user("eve@globex.test", other)
    theirs = add_session(
        services,
        other,
        stranger,
        created=START - timedelta(minutes=3),
        last_seen=START - timedelta(minutes=1),
    )
    token = csrf_from(admin_client.get("/admin/sessions").text)

    answer = admin_client.post(
        "/admin/sessions/end",
        data={"csrf_token": token, "session": [crowd["phone"], theirs]},
        headers=HTMX,
    )

    assert answer.status_code == 404
    assert session_row(services, crowd["phone"]).ended_at is None
    assert session_row(services, theirs).ended_at is None
    nothing = admin_client.post("/admin/sessions/end", data={"csrf_token": token}, headers=HTMX)
    assert nothing.status_code == 422 and "Select at least one session." in nothing.text
    without_js = admin_client.post(
        "/admin/sessions/end", data={"csrf_token": token, "session": [crowd["laptop"]]}
    )
    assert without_js.status_code == 302
    assert "Ended 1 session." in admin_client.get(without_js.location).text


def test_ending_your_own_session_signs_you_out(admin_client, services, clock):
    own = session_id_of(admin_client, services, clock)
    token = csrf_from(admin_client.get("/admin/sessions").text)
    answer = admin_client.post(f"/admin/sessions/{own}/end", headers={**HTMX, "X-CSRFToken": token})
    assert answer.headers["HX-Redirect"] == "/login?reason=revoked_by_admin"
    assert admin_client.get("/admin").status_code == 302


def test_ending_twice_changes_nothing_more(admin_client, services, crowd):
    token = csrf_from(admin_client.get("/admin/sessions").text)
    url = f"/admin/sessions/{crowd['laptop']}/end"
    admin_client.post(url, headers={**HTMX, "X-CSRFToken": token})
    again = admin_client.post(url, headers={**HTMX, "X-CSRFToken": token})
    assert again.status_code == 200 and "Ended by an admin" in again.text
    assert len(events_of(services, "session.ended", session_id=crowd["laptop"])) == 1
