"""The regulatory report: a tenant's sessions and audit events for a date range, as CSV."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app import Services
from app.clock import FrozenClock
from app.core import reports
from app.core.errors import ValidationError
from app.models import Device, Event, Tenant, User, UserSession
from testkit.mail import Mailbox
from testkit.rows import Factory
from testkit.values import UA_IPAD
from testkit.web import csrf_from, login

FORMULA_AGENT = '=HYPERLINK("http://evil.test","click")'


def sign_out(client: FlaskClient) -> None:
    page = client.get("/devices")
    assert client.post("/logout", data={"csrf_token": csrf_from(page.text)}).status_code == 302


def session_of(services: Services, user: User) -> str:
    with services.session() as db:
        newest = db.scalars(
            select(UserSession.id)
            .where(UserSession.user_id == user.id)
            .order_by(UserSession.created_at.desc())
        ).first()
    assert newest is not None
    return newest


@pytest.fixture
def week(
    app: Flask,
    services: Services,
    make: Factory,
    clock: FrozenClock,
    mailbox: Mailbox,
    tenant: Tenant,
) -> dict[str, Any]:
    """Sessions of Acme around 4-6 March 2026 (UTC), and one of Globex inside it."""
    sam = make.user("sam@acme.test", tenant)
    globex = make.tenant("globex")
    kim = make.user("kim@globex.test", globex)
    ids: dict[str, str] = {}

    def sign_in(name: str, user: User, at: datetime, **kw: Any) -> FlaskClient:
        clock.set(at)
        client = app.test_client()
        assert login(client, mailbox, user.email, **kw).status_code == 302
        ids[name] = session_of(services, user)
        return client

    # 2 March: one signed out the same day, one left to expire the same day.
    sign_out(sign_in("before_out", sam, datetime(2026, 3, 2, 9, 0, tzinfo=UTC)))
    sign_in("before_expired", sam, datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
    # 3 March 23:50 to 4 March 00:05: overlaps the start of the range.
    overlap = sign_in("overlap", sam, datetime(2026, 3, 3, 23, 50, tzinfo=UTC))
    clock.set(datetime(2026, 3, 4, 0, 5, tzinfo=UTC))
    sign_out(overlap)
    # 5 March: inside, never used again; from a browser whose name is a formula.
    sign_in("inside", sam, datetime(2026, 3, 5, 10, 0, tzinfo=UTC), user_agent=FORMULA_AGENT)
    sign_in("other_tenant", kim, datetime(2026, 3, 5, 11, 0, tzinfo=UTC))
    # 7 March: after the range.
    sign_in("after", sam, datetime(2026, 3, 7, 0, 0, tzinfo=UTC), user_agent=UA_IPAD)
    admin = make.user("ada@acme.test", tenant, role="admin")
    admin_client = app.test_client()
    assert login(admin_client, mailbox, admin.email).status_code == 302
    return {"ids": ids, "admin": admin, "client": admin_client, "tenant": tenant}


def download(client: FlaskClient, kind: str, first: str, last: str) -> Any:
    page = client.get("/admin/reports")
    assert page.status_code == 200
    return client.post(
        "/admin/reports",
        data={"csrf_token": csrf_from(page.text), "kind": kind, "first": first, "last": last},
    )


def rows_of(response: Any) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_the_sessions_report_holds_the_sessions_that_existed_in_the_range(
    services: Services, week: dict[str, Any]
) -> None:
    ids = week["ids"]
    response = download(week["client"], "sessions", "2026-03-04", "2026-03-06")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert (
        response.headers["Content-Disposition"]
        == 'attachment; filename="holdfast-acme-sessions-20260304-20260306.csv"'
    )
    text = response.get_data(as_text=True)
    assert text.splitlines()[0] == ",".join(reports.SESSION_COLUMNS)
    rows = rows_of(response)
    assert [r["session_id"] for r in rows] == [ids["overlap"], ids["inside"]]
    overlap, inside = rows
    assert overlap["email"] == "sam@acme.test" and overlap["end_reason"] == "logout"
    assert overlap["signed_in_at"] == "2026-03-03T23:50:00Z"
    assert overlap["ended_at"] == "2026-03-04T00:05:00Z"
    assert inside["ip"] == "127.0.0.1"
    # A spreadsheet must not run the browser's name as a formula.
    assert inside["user_agent"] == "'" + FORMULA_AGENT
    with services.session() as db:
        event = db.scalars(select(Event).order_by(Event.id.desc())).first()
    assert event is not None and event.kind == "report.downloaded"
    assert event.actor_id == week["admin"].id
    assert event.details == {
        "report": "sessions",
        "first_day": "2026-03-04",
        "last_day": "2026-03-06",
    }


def test_the_events_report_holds_the_ranges_events_in_chain_order(
    services: Services, week: dict[str, Any]
) -> None:
    tenant = week["tenant"]
    response = download(week["client"], "events", "2026-03-05", "2026-03-05")
    assert response.status_code == 200
    rows = rows_of(response)
    with services.session() as db:
        expected = list(
            db.scalars(
                select(Event)
                .where(
                    Event.tenant_id == tenant.id,
                    Event.at >= datetime(2026, 3, 5, tzinfo=UTC),
                    Event.at < datetime(2026, 3, 6, tzinfo=UTC),
                )
                .order_by(Event.seq)
            )
        )
    assert len(expected) >= 3
    assert [int(r["event_id"]) for r in rows] == [e.id for e in expected]
    assert [r["hash"] for r in rows] == [e.hash for e in expected]
    assert [int(r["chain_position"]) for r in rows] == [e.seq for e in expected]
    created = next(r for r in rows if r["kind"] == "session.created")
    assert created["subject_email"] == "sam@acme.test"
    assert created["session_id"] == week["ids"]["inside"]
    assert json.loads(created["details"])["device_id"].startswith("dev_")
    assert "kim@globex.test" not in response.get_data(as_text=True)
    assert all(r["at"].startswith("2026-03-05T") for r in rows)


def test_a_bad_range_is_explained(week: dict[str, Any]) -> None:
    client = week["client"]
    backwards = download(client, "sessions", "2026-03-06", "2026-03-04")
    assert backwards.status_code == 422 and "comes before the first day" in backwards.text
    unreadable = download(client, "events", "last tuesday", "2026-03-04")
    assert unreadable.status_code == 422 and "YYYY-MM-DD" in unreadable.text
    too_long = download(client, "events", "2000-01-01", "2026-03-04")
    assert too_long.status_code == 422 and "at most" in too_long.text
    with pytest.raises(ValidationError):
        reports.period("2026-02-30", "2026-03-01")


def test_members_cannot_download_reports(
    app: Flask, make: Factory, tenant: Tenant, mailbox: Mailbox
) -> None:
    member = make.user("sam@acme.test", tenant)
    client = app.test_client()
    assert login(client, mailbox, member.email).status_code == 302
    assert client.get("/admin/reports").status_code == 403
    page = client.get("/devices")
    answer = client.post(
        "/admin/reports",
        data={
            "csrf_token": csrf_from(page.text),
            "kind": "sessions",
            "first": "2026-03-01",
            "last": "2026-03-02",
        },
    )
    assert answer.status_code == 403


def test_live_ended_and_expired_sessions_around_the_edges(
    app: Flask,
    services: Services,
    make: Factory,
    clock: FrozenClock,
    mailbox: Mailbox,
    tenant: Tenant,
) -> None:
    """A session is in the report if it was alive at any moment of the range, whether
    it is still live, ended, or expired without anyone marking it. Live sessions used to
    be left out (NOT over_before(start) is NULL in SQL when ended_at is NULL)."""
    sam = make.user("sam@acme.test", tenant)
    day = datetime(2026, 3, 4, tzinfo=UTC)  # the range: 4 to 6 March (up to 7 March 00:00)
    hour = timedelta(hours=1)
    far = datetime(2026, 4, 1, tzinfo=UTC)
    shapes: dict[str, tuple[datetime, datetime | None, datetime, bool]] = {
        # name: (signed in, ended, idle deadline, in the report)
        "live_from_before": (day - 12 * hour, None, far, True),
        "live_inside": (day + 30 * hour, None, far, True),
        "live_from_the_end": (day + 72 * hour, None, far, False),
        "ended_into_the_range": (day - hour, day + timedelta(minutes=1), far, True),
        "ended_before": (day - 2 * hour, day - timedelta(minutes=1), far, False),
        "ended_after_the_range": (day + 71 * hour, day + 96 * hour, far, True),
        "expired_into_the_range": (day - hour, None, day + timedelta(minutes=20), True),
        "expired_before": (day - 4 * hour, None, day - 3 * hour, False),
        "expired_inside": (day + 24 * hour, None, day + 25 * hour, True),
    }
    ids: dict[str, str] = {}
    with services.session(write=True) as db:
        device = Device(tenant_id=tenant.id, user_id=sam.id, cookie_hash="c" * 64)
        db.add(device)
        db.flush()
        for name, (created, ended, idle, _inside) in shapes.items():
            session = UserSession(
                tenant_id=tenant.id,
                user_id=sam.id,
                device_id=device.id,
                created_at=created,
                authenticated_at=created,
                last_seen_at=created,
                idle_deadline=idle,
                absolute_deadline=far,
                ended_at=ended,
                end_reason="logout" if ended else None,
                user_agent=name,
            )
            db.add(session)
            db.flush()
            ids[name] = session.id
        db.commit()
    admin = make.user("ada@acme.test", tenant, role="admin")
    clock.set(datetime(2026, 3, 8, 12, 0, tzinfo=UTC))
    client = app.test_client()
    assert login(client, mailbox, admin.email).status_code == 302
    response = download(client, "sessions", "2026-03-04", "2026-03-06")
    assert response.status_code == 200
    reported = {row["user_agent"] for row in rows_of(response)}
    assert reported == {name for name, shape in shapes.items() if shape[3]}
    by_name = {row["user_agent"]: row for row in rows_of(response)}
    assert by_name["live_from_before"]["session_id"] == ids["live_from_before"]
    assert by_name["live_from_before"]["ended_at"] == ""
