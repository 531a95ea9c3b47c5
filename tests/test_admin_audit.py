"""The audit log over HTTP: newest first, filters, keyset pages, one event in full, and
the streamed CSV export of the filtered view."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import insert

from app.models import Event
from testkit.values import START

EVENT_ROW = re.compile(r'<tr id="event-(\d+)"')
KIND = re.compile(r'<tr id="event-\d+" data-kind="([a-z_.]+)">')


def add_events(services, tenant, rows):
    """Events written straight into the log: (kind, minutes before START, actor, subject)."""
    with services.session(write=True) as db:
        db.execute(
            insert(Event),
            [
                {
                    "tenant_id": tenant.id,
                    "kind": kind,
                    "at": START - timedelta(minutes=minutes),
                    "actor_id": actor,
                    "subject_id": subject,
                    "session_id": None,
                    "ip": "192.0.2.1",
                    "details": {"n": n},
                }
                for n, (kind, minutes, actor, subject) in enumerate(rows)
            ],
        )
        db.commit()


def shown(html: str) -> list[int]:
    return [int(i) for i in EVENT_ROW.findall(html)]


def test_audit_log_lists_the_tenants_events_newest_first(admin_client, admin, member, make):
    make.tenant("globex")  # its tenant.created event is not ours
    page = admin_client.get("/admin/audit")
    assert page.status_code == 200
    ids = shown(page.text)
    assert ids == sorted(ids, reverse=True)
    kinds = KIND.findall(page.text)
    # The admin's sign-in, the two people added, the tenant created; never globex's.
    assert "session.created" in kinds and "code.requested" in kinds
    assert kinds.count("user.created") == 2 and kinds[-1] == "tenant.created"
    assert len(kinds) == len(ids)
    # In words, the people linked by name (else email), no raw id in the sentences.
    said = re.findall(r'<td class="said">(.*?)</td>', page.text)
    assert f'<a href="/admin/users/{member.id}">sam@acme.test</a>' in page.text
    assert said[-1] == "Holdfast created the tenant Acme"
    assert (
        f'<a href="/admin/users/{admin.id}">ada@acme.test</a> signed in on Chrome on macOS' in said
    ), said
    words = [re.sub(r"<[^>]+>", "", s) for s in said]
    assert not any("usr_" in w or "dev_" in w or "None" in w for w in words), words


@pytest.mark.parametrize(
    ("query", "expected_kinds"),
    [
        ("kind=session.ended", ["session.ended", "session.ended"]),
        ("kind=session.", ["session.ended", "session.created", "session.ended"]),
        ("actor=ada@acme.test", ["session.ended", "user.role_changed"]),
        ("subject=SUBJECT", ["session.ended", "session.created", "user.role_changed"]),
        ("from=2026-02-28&to=2026-02-28", ["user.role_changed"]),
        ("kind=session.ended&actor=ada@acme.test", ["session.ended"]),
    ],
)
def test_audit_filters(admin_client, services, tenant, admin, member, query, expected_kinds):
    add_events(
        services,
        tenant,
        [
            ("user.role_changed", 2 * 24 * 60, admin.id, member.id),  # 28 Feb 09:00
            ("session.ended", 24 * 60, None, "usr_gone"),  # 1 Mar 09:00
            ("session.created", 24 * 60 + 30, member.id, member.id),  # 1 Mar 08:30
            ("session.ended", 24 * 60 + 20, admin.id, member.id),  # 1 Mar 08:40
        ],
    )
    # Everything arranged is before today, so the fixtures' own events stay out of view.
    url = "/admin/audit?" + query.replace("SUBJECT", member.id)
    if "to=" not in query:
        url += "&to=2026-03-01"
    page = admin_client.get(url)
    assert page.status_code == 200
    kinds = KIND.findall(page.text)
    assert kinds == expected_kinds


def test_bad_audit_filters_say_what_is_wrong(admin_client):
    for query, message in [
        ("actor=nobody@acme.test", "Nobody in this tenant has the email nobody@acme.test."),
        ("from=02/03/2026", "Dates are written YYYY-MM-DD."),
        ("from=2026-03-02&to=2026-03-01", "The end date is before the start date."),
        ("cursor=abc", "That page cursor is not valid."),
    ]:
        page = admin_client.get(f"/admin/audit?{query}")
        assert page.status_code == 422, query
        assert message in page.text, query


def test_audit_pages_with_a_keyset_cursor(admin_client, services, tenant, member):
    add_events(services, tenant, [("code.failed", 60 - n, None, member.id) for n in range(60)])
    first = admin_client.get("/admin/audit?kind=code.failed")
    next_url = re.search(r'href="([^"]+)" rel="next"', first.text).group(1).replace("&amp;", "&")
    assert "kind=code.failed" in next_url and "cursor=" in next_url
    second = admin_client.get(next_url)
    assert len(shown(first.text)) == 50 and len(shown(second.text)) == 10
    assert shown(first.text)[-1] > shown(second.text)[0]
    assert 'rel="next"' not in second.text


def test_one_event_in_full(admin_client, services, tenant, admin, member):
    add_events(services, tenant, [("user.role_changed", 5, admin.id, member.id)])
    event_id = shown(admin_client.get("/admin/audit?kind=user.role_changed").text)[0]
    page = admin_client.get(f"/admin/audit/{event_id}")
    assert page.status_code == 200
    assert "user.role_changed" in page.text and "ada@acme.test" in page.text
    assert "&#34;n&#34;: 0" in page.text  # the details, as JSON
    assert admin_client.get("/admin/audit/999999").status_code == 404


def test_csv_export_streams_the_filtered_view(admin_client, services, tenant, make, member):
    sly = make.user("=sum@acme.test", tenant)  # a spreadsheet must not run this as a formula
    add_events(services, tenant, [("code.failed", 1, None, sly.id)])
    add_events(services, tenant, [("code.failed", 2, None, member.id)] * 2500)

    answer = admin_client.get("/admin/audit.csv?kind=code.failed")

    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    assert answer.is_streamed
    assert 'attachment; filename="audit-acme-' in answer.headers["Content-Disposition"]
    chunks = list(answer.response)
    assert len(chunks) >= 3  # written a batch at a time, not as one string
    rows = list(
        csv.DictReader(
            io.StringIO(
                b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks).decode()
            )
        )
    )
    assert len(rows) == 2501
    assert {row["kind"] for row in rows} == {"code.failed"}
    assert rows[-1]["subject_email"] == "'=sum@acme.test"  # the oldest, last
    assert rows[0]["subject_email"] == "sam@acme.test" and rows[1]["ip"] == "192.0.2.1"
    assert rows[0]["at"].endswith("Z")
    assert admin_client.get("/admin/audit.csv?from=never").status_code == 422
