"""The admin dashboard: live figures, the polled figures partial, chart data, and the
links from each figure to the explorer. Plus ``holdfast demo --users --sessions``."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func, select

from app import models
from app.core import stats
from app.db import scope_to_tenant
from app.models import Device, Event, User, UserSession
from testkit.rows import add_session
from testkit.values import START
from testkit.web import HTMX, csrf_from, request_code, sign_in

TODAY = START.date().isoformat()


def figure(html: str, key: str) -> int:
    match = re.search(
        rf'id="figure-{key}"[^>]*>\s*<span class="figure-value">([\d,]+)</span>', html
    )
    assert match, f"no figure {key}"
    return int(match.group(1).replace(",", ""))


def test_dashboard_figures_count_the_tenant_now(
    app, admin_client, mailbox, services, clock, tenant, member, make
):
    # The member: two live sessions (phone, desktop), one ended today, one from yesterday.
    recent = START - timedelta(minutes=5)
    add_session(
        services,
        tenant,
        member,
        created=START - timedelta(hours=1),
        last_seen=recent,
        kind="phone",
        os="iOS",
        browser="Safari",
    )
    add_session(services, tenant, member, created=START - timedelta(hours=2), last_seen=recent)
    add_session(
        services,
        tenant,
        member,
        created=START - timedelta(hours=3),
        ended=START - timedelta(hours=2),
        reason="logout",
    )
    add_session(
        services,
        tenant,
        member,
        created=START - timedelta(days=1),
        ended=START - timedelta(days=1, hours=-1),
        reason="logout",
    )
    # Another tenant's crowd counts for nothing here.
    other = make.tenant("globex")
    stranger = make.user("eve@globex.test", other)
    for hours in range(3):
        add_session(services, other, stranger, created=START - timedelta(hours=hours))
    # A wrong code entered by the member today, through the real page.
    browser = app.test_client()
    request_code(browser, member.email)
    page = browser.get("/login/code")
    browser.post("/login/code", data={"code": "000000", "csrf_token": csrf_from(page.text)})
    expected_alerts = _open_alerts(services, tenant)

    page = admin_client.get("/admin")

    assert page.status_code == 200
    html = page.text
    assert figure(html, "live-sessions") == 3  # the member's two and the admin's own
    assert figure(html, "people-signed-in") == 2
    assert figure(html, "sign-ins-today") == 4  # 3 of the member's today + the admin's
    assert figure(html, "failed-codes-today") == 1
    assert figure(html, "open-alerts") == expected_alerts
    # Each figure opens the explorer (or the audit log) filtered to it.
    assert 'id="figure-live-sessions" href="/admin/sessions?status=live"' in html
    assert f'href="/admin/sessions?status=all&amp;sort=signed_in&amp;from={TODAY}"' in html
    assert f'href="/admin/audit?kind=code.failed&amp;from={TODAY}"' in html
    # The charts are canvases that read their data from JSON endpoints: no inline script.
    assert html.count("data-chart-url=") == 6
    assert "<script>" not in html
    assert "'unsafe-inline'" not in page.headers["Content-Security-Policy"]
    # Following the "sign-ins today" link shows exactly those sessions.
    explorer = admin_client.get(f"/admin/sessions?status=all&sort=signed_in&from={TODAY}")
    assert explorer.text.count('class="session-row') == 4


def _open_alerts(services, tenant) -> int:
    """Open alerts are the monitoring issue's; where that model exists, arrange one open
    and one resolved alert and expect 1."""
    alert = getattr(models, "Alert", None)
    if alert is None:
        return 0
    with services.session(write=True) as db:
        for status in ("open", "resolved"):
            db.add(
                alert(
                    tenant_id=tenant.id,
                    created_at=START,
                    kind="new_device",
                    severity="low",
                    status=status,
                )
            )
        db.commit()
    return 1


def test_figures_partial_is_a_fragment_that_polls_and_moves(
    app, admin_client, mailbox, services, member
):
    first = admin_client.get("/admin/figures", headers=HTMX)
    assert first.status_code == 200
    assert "<html" not in first.text
    assert 'hx-trigger="every 10s"' in first.text
    assert 'hx-get="/admin/figures"' in first.text
    before = figure(first.text, "live-sessions")

    sign_in(app, mailbox, member.email)

    assert figure(admin_client.get("/admin/figures", headers=HTMX).text, "live-sessions") == (
        before + 1
    )


def test_chart_data_comes_from_sql_aggregates(admin_client, services, tenant, member, clock):
    day = timedelta(days=1)
    # Sign-ins: two on 25 Feb (08:xx and 14:xx), one today at 07:xx; one 40 days ago.
    add_session(
        services,
        tenant,
        member,
        created=START - 5 * day - timedelta(minutes=50),
        ended=START - 5 * day - timedelta(minutes=46),
        reason="logout",
        kind="phone",
        os="Android",
        browser="Chrome",
    )
    add_session(
        services,
        tenant,
        member,
        created=START - 5 * day + timedelta(hours=5),
        ended=START - 5 * day + timedelta(hours=8),
        reason="idle_expired",
    )
    add_session(
        services,
        tenant,
        member,
        created=START - timedelta(hours=2),
        last_seen=START - timedelta(minutes=1),
        kind="tablet",
        os="iOS",
        browser="Safari",
    )
    add_session(
        services,
        tenant,
        member,
        created=START - 40 * day,
        ended=START - 40 * day + timedelta(hours=1),
        reason="logout",
    )

    per_day = admin_client.get("/admin/charts/sign-ins-per-day.json").json
    assert len(per_day["labels"]) == 30
    assert per_day["labels"][-1] == "02 Mar"
    assert per_day["values"][-1] == 2  # the tablet and the admin's own sign-in
    assert per_day["values"][-6] == 2  # 25 Feb
    assert per_day["total"] == 4  # 40 days ago is outside the window
    assert per_day["links"][-6] == (
        "/admin/sessions?status=all&sort=signed_in&from=2026-02-25&to=2026-02-25"
    )

    by_hour = admin_client.get("/admin/charts/sign-ins-by-hour.json").json
    assert by_hour["labels"][0] == "00" and len(by_hour["values"]) == 24
    assert by_hour["values"][8] == 1 and by_hour["values"][14] == 1
    assert by_hour["values"][7] == 1 and by_hour["values"][9] == 1  # tablet; admin at 09:00

    kinds = admin_client.get("/admin/charts/live-by-kind.json").json
    assert dict(zip(kinds["labels"], kinds["values"], strict=True)) == {
        "Desktop": 1,  # the admin's browser
        "Tablet": 1,
    }
    tablet = kinds["labels"].index("Tablet")
    assert kinds["links"][tablet] == "/admin/sessions?status=live&kind=tablet"
    browsers = admin_client.get("/admin/charts/live-by-browser.json").json
    assert "/admin/sessions?status=live&browser=Safari" in browsers["links"]

    lengths = admin_client.get("/admin/charts/session-lengths.json").json
    counts = dict(zip(lengths["labels"], lengths["values"], strict=True))
    assert counts["under 5 min"] == 1
    assert counts["2-8 h"] == 1
    assert lengths["total"] == 2  # the one that ended 40 days ago is outside the window

    assert admin_client.get("/admin/charts/nothing-here.json").status_code == 404


def test_live_by_folds_the_rarest_into_other(services, tenant, member, make):
    for browser in ("Chrome", "Chrome", "Chrome", "Safari", "Safari", "Firefox", "Edge"):
        add_session(services, tenant, member, created=START - timedelta(minutes=5), browser=browser)
    with services.session() as db:
        scope_to_tenant(db, tenant.id)
        series = stats.live_by(db, "browser", now=START, top=2)
    assert series.labels == ["Chrome", "Safari", "Other"]
    assert series.values == [3, 2, 2]
    assert series.keys == ["Chrome", "Safari", None]


def test_dashboard_link_in_the_nav_for_admins_only(app, admin_client, mailbox, member):
    assert 'href="/admin">Admin</a>' in admin_client.get("/devices").text
    member_client = sign_in(app, mailbox, member.email)
    assert 'href="/admin">Admin</a>' not in member_client.get("/devices").text


def test_demo_seeds_people_and_sessions_in_bulk_and_only_once(app, services, clock):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["demo", "--users", "40", "--sessions", "500"])
    assert result.exit_code == 0, result.output
    assert "Added 38 people" in result.output
    with services.session() as db:
        tenant = db.scalars(select(models.Tenant).where(models.Tenant.slug == "demo")).one()
        people = db.scalar(
            select(func.count()).select_from(User).where(User.tenant_id == tenant.id)
        )
        sessions = db.scalars(select(UserSession).where(UserSession.tenant_id == tenant.id)).all()
        kinds = set(db.scalars(select(Device.kind).distinct()))
        failed = db.scalar(
            select(func.count()).select_from(Event).where(Event.kind == "code.failed")
        )
        admin_sessions = db.scalar(
            select(func.count())
            .select_from(UserSession)
            .join(User, User.id == UserSession.user_id)
            .where(User.email == "admin@demo.holdfast.test")
        )
    assert people == 40
    assert len(sessions) == 500
    now = clock.now()
    live = [s for s in sessions if s.ended_at is None]
    assert live and all(s.idle_deadline > now for s in live)
    # A live session's deadlines are the policy's, as a real one's: the trusted idle
    # timeout and lifetime on a trusted device (app.core.sessions), the plain ones else.
    with services.session() as db:
        trusted = {d.id for d in db.scalars(select(Device)) if d.is_trusted(now)}
    assert trusted & {s.device_id for s in live}, "the demo has live trusted sessions"
    for s in live:
        on_trust = s.device_id in trusted
        idle = (
            max(tenant.idle_timeout, tenant.trusted_idle_timeout)
            if on_trust
            else tenant.idle_timeout
        )
        longest = (
            max(tenant.trusted_lifetime, tenant.absolute_lifetime)
            if on_trust and tenant.trusted_outlives_absolute
            else tenant.absolute_lifetime
        )
        assert s.absolute_deadline == s.created_at + timedelta(seconds=longest)
        assert s.idle_deadline == min(s.last_seen_at + timedelta(seconds=idle), s.absolute_deadline)
    assert all(s.ended_at <= now and s.end_reason for s in sessions if s.ended_at)
    assert {"desktop", "phone"} <= kinds
    assert failed >= 1
    assert admin_sessions == 0  # the demo admin's own device list stays theirs

    again = runner.invoke(args=["demo", "--users", "40", "--sessions", "500"])
    assert again.exit_code == 0
    assert "Added 0 people, 0 devices and 0 sessions" in again.output
