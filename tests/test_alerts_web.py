"""Alerts over HTTP: replay and binding rules on the request path, the admin's alert list
(acknowledge and resolve with htmx, keyset pages), high alerts emailed, the "This wasn't
me" link, and the slowed code sign-in answering 429."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func, select

from app.core import alert_inbox, alerts
from app.db import scope_to_tenant
from app.mail import plain_text
from app.models import Alert, CodeSlowdown, Device, Event, NotMeToken, UserSession
from testkit.mail import outbox_drained
from testkit.values import UA_IPAD, UA_MAC_CHROME
from testkit.web import csrf_from, login, session_id_of, sign_in

HTMX = {"HX-Request": "true"}
UA_MAC_FIREFOX = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:127.0) Gecko/20100101 Firefox/127.0"
)
UA_MAC_CHROME_NEWER = UA_MAC_CHROME.replace("Chrome/126.0.0.0", "Chrome/127.0.6533.72")
HOME = "203.0.113.7"
ELSEWHERE = "198.51.100.9"


def alerts_of(services, kind=None):
    with services.session() as db:
        query = select(Alert).order_by(Alert.created_at, Alert.id)
        if kind:
            query = query.where(Alert.kind == kind)
        return list(db.scalars(query))


def get(client, path, *, ip=HOME, ua=UA_MAC_CHROME, **kw):
    return client.get(
        path,
        headers={"User-Agent": ua, **kw.pop("headers", {})},
        environ_base={"REMOTE_ADDR": ip},
        **kw,
    )


def signed_in_client(app, mailbox, email, **kw):
    """A browser signed in as ``email`` from the home address."""
    return sign_in(app, mailbox, email, remote_addr=HOME, **kw)


# --- replay -----------------------------------------------------------------------------------


def test_a_logged_out_token_used_again_raises_one_replay_alert(
    app, mailbox, member, services, clock
):
    browser = signed_in_client(app, mailbox, member.email)
    token = browser.get_cookie("holdfast_session").value
    session_id = session_id_of(browser, services, clock)
    page = get(browser, "/devices")
    browser.post("/logout", data={"csrf_token": csrf_from(page.text)})

    clock.advance(minutes=5)
    thief = app.test_client()
    thief.set_cookie("holdfast_session", token)
    for _ in range(3):  # however often it is replayed: one alert
        answer = get(thief, "/session/status", ip=ELSEWHERE)
        assert answer.status_code == 401
        assert answer.json["code"] == "invalid_session"
        thief.set_cookie("holdfast_session", token)
    [alert] = alerts_of(services, "session_replay")
    assert (alert.severity, alert.session_id, alert.ip) == ("medium", session_id, ELSEWHERE)
    assert alert.details["end_reason"] == "logout"
    with services.session() as db:
        raised = db.scalars(select(Event).where(Event.kind == "alert.raised")).all()
        assert [e.session_id for e in raised] == [session_id]


def test_a_revoked_browser_finding_out_is_not_a_replay(app, mailbox, member, services, clock):
    desk = signed_in_client(app, mailbox, member.email)
    ipad = signed_in_client(app, mailbox, member.email, user_agent=UA_IPAD)
    ipad_token = ipad.get_cookie("holdfast_session").value
    ipad_session = session_id_of(ipad, services, clock)
    # The new-device mail is out (its sender's write would make the best-effort note
    # below skip on SQLite, as any concurrent writer may).
    outbox_drained(services)
    page = get(desk, "/devices")
    desk.post(
        f"/sessions/{ipad_session}/end", headers={**HTMX, "X-CSRFToken": csrf_from(page.text)}
    )

    # The iPad's page polls and learns it was signed out: its cookie is cleared.
    for _ in range(2):  # parallel requests of the same browser
        answer = get(ipad, "/session/status", ua=UA_IPAD)
        assert answer.status_code == 401
        assert answer.json["reason"] == "revoked_by_user"
        ipad.set_cookie("holdfast_session", ipad_token)
    assert alerts_of(services, "session_replay") == []
    with services.session() as db:
        assert db.get_one(UserSession, ipad_session).token_refused_at == clock.now()

    # Someone who kept a copy uses it later: that is a replay.
    clock.advance(minutes=10)
    copy = app.test_client()
    copy.set_cookie("holdfast_session", ipad_token)
    assert get(copy, "/devices", ip=ELSEWHERE).status_code == 302
    assert get(copy, "/devices", ip=ELSEWHERE).status_code == 302
    [alert] = alerts_of(services, "session_replay")
    assert alert.details["end_reason"] == "revoked_by_user"


# --- binding --------------------------------------------------------------------------------


def test_binding_allow_by_default(app, mailbox, member, services):
    browser = signed_in_client(app, mailbox, member.email)
    assert get(browser, "/devices", ip=ELSEWHERE, ua=UA_MAC_FIREFOX).status_code == 200
    assert alerts_of(services) == []


def test_binding_flag_raises_one_alert_and_keeps_the_session(
    app, mailbox, member, services, clock, make, tenant
):
    make.policy(tenant, ip_change="flag", ua_change="flag")
    browser = signed_in_client(app, mailbox, member.email)
    session_id = session_id_of(browser, services, clock)
    # A browser update changes the raw user agent, not its family: nothing to see.
    assert get(browser, "/devices", ua=UA_MAC_CHROME_NEWER).status_code == 200
    assert alerts_of(services) == []

    for _ in range(3):
        assert get(browser, "/devices", ip=ELSEWHERE).status_code == 200
    [alert] = alerts_of(services, "ip_changed")
    assert (alert.severity, alert.session_id, alert.ip) == ("low", session_id, ELSEWHERE)
    assert alert.details["session_ip"] == HOME

    assert get(browser, "/devices", ua=UA_MAC_FIREFOX).status_code == 200
    [ua_alert] = alerts_of(services, "ua_changed")
    assert ua_alert.severity == "medium"
    assert "Chrome on macOS to Firefox on macOS" in ua_alert.details["summary"]
    with services.session() as db:
        assert db.get_one(UserSession, session_id).ended_at is None


def test_binding_end_signs_the_session_out_as_suspicious(
    app, mailbox, member, services, clock, make, tenant
):
    make.policy(tenant, ua_change="end")
    browser = signed_in_client(app, mailbox, member.email)
    session_id = session_id_of(browser, services, clock)
    assert get(browser, "/devices", ip=ELSEWHERE).status_code == 200  # IP: allowed

    answer = get(browser, "/devices", ua=UA_MAC_FIREFOX)
    assert answer.status_code == 302
    assert answer.location.startswith("/login?reason=suspicious")
    assert browser.get_cookie("holdfast_session") is None
    with services.session() as db:
        session = db.get_one(UserSession, session_id)
        assert session.end_reason == "suspicious"
        ended = db.scalars(select(Event).where(Event.kind == "session.ended")).one()
        assert ended.details["reason"] == "suspicious"
    [alert] = alerts_of(services, "ua_changed")
    assert alert.severity == "medium"
    assert alert.details["action"] == "end"
    assert "You were signed out to protect your account." in get(browser, answer.location).text


# --- the admin's list -----------------------------------------------------------------------


def raise_some(services, tenant, member, clock, count, **kw):
    with services.session(write=True) as db:
        made = []
        for number in range(count):
            made.append(
                alerts.raise_alert(
                    db,
                    kw.get("kind", "code_burst"),
                    kw.get("severity", "medium"),
                    tenant_id=tenant.id,
                    now=clock.now() + timedelta(seconds=number),
                    summary=f"Finding number {number}",
                    user_id=member.id,
                )
            )
        db.commit()
        return [a.id for a in made]


def test_admin_lists_acknowledges_and_resolves_alerts_with_htmx(
    app, mailbox, member, admin, services, clock, tenant
):
    [first, second] = raise_some(services, tenant, member, clock, 2)
    client = signed_in_client(app, mailbox, admin.email)
    page = get(client, "/admin/alerts")
    assert page.status_code == 200
    assert page.text.count('class="alert-row') == 2
    assert "Finding number 1" in page.text and member.email in page.text
    assert "2 open alerts" in page.text
    assert alert_inbox.open_alert_count(services.session(), tenant.id) == 2

    answer = client.post(
        f"/admin/alerts/{first}/acknowledge", headers={**HTMX, "X-CSRFToken": csrf_from(page.text)}
    )
    assert answer.status_code == 200
    assert "<html" not in answer.text and f'id="alert-{first}"' in answer.text
    assert "Acknowledged" in answer.text
    assert "small acknowledge" not in answer.text  # no button for what is done
    answer = client.post(
        f"/admin/alerts/{second}/resolve", headers={**HTMX, "X-CSRFToken": csrf_from(page.text)}
    )
    assert "Resolved" in answer.text

    with services.session() as db:
        one, two = db.get_one(Alert, first), db.get_one(Alert, second)
        assert (one.status, one.acknowledged_by, one.acknowledged_at) == (
            "acknowledged",
            admin.id,
            clock.now(),
        )
        assert (two.status, two.resolved_by) == ("resolved", admin.id)
        kinds = [
            (e.kind, e.details["alert_id"], e.actor_id)
            for e in db.scalars(
                select(Event).where(Event.kind.in_(["alert.acknowledged", "alert.resolved"]))
            )
        ]
        assert kinds == [
            ("alert.acknowledged", first, admin.id),
            ("alert.resolved", second, admin.id),
        ]
    assert alert_inbox.open_alert_count(services.session(), tenant.id) == 0

    unresolved = get(client, "/admin/alerts")
    assert (
        f'id="alert-{first}"' in unresolved.text and f'id="alert-{second}"' not in unresolved.text
    )
    resolved = get(client, "/admin/alerts?status=resolved")
    assert f'id="alert-{second}"' in resolved.text and f'id="alert-{first}"' not in resolved.text
    bad = get(client, "/admin/alerts?status=nonsense")
    assert bad.status_code == 422 and "status is one of" in bad.text

    # Without JavaScript the button posts and comes back to the list.
    plain = client.post(f"/admin/alerts/{first}/resolve", data={"csrf_token": csrf_from(page.text)})
    assert plain.status_code == 302 and plain.location == "/admin/alerts"


def test_alert_list_pages_by_keyset(app, mailbox, member, admin, services, clock, tenant):
    ids = raise_some(services, tenant, member, clock, 55)
    client = signed_in_client(app, mailbox, admin.email)
    page = get(client, "/admin/alerts")
    shown = re.findall(r'id="alert-(alr_[^"]+)"', page.text)
    assert shown == list(reversed(ids))[:50]
    more = re.search(r'hx-get="([^"]*cursor=[^"]+)"', page.text).group(1).replace("&amp;", "&")
    rest = get(client, more, headers=HTMX)
    assert "<html" not in rest.text
    assert re.findall(r'id="alert-(alr_[^"]+)"', rest.text) == list(reversed(ids))[50:]
    assert "cursor=" not in rest.text
    assert get(client, "/admin/alerts?cursor=garbage").status_code == 422


def test_alerts_are_for_admins_of_the_tenant_only(
    app, mailbox, member, admin, services, clock, tenant, make
):
    [mine] = raise_some(services, tenant, member, clock, 1)
    other = make.tenant("globex")
    stranger = make.user("hank@globex.test", other)
    [theirs] = raise_some(services, other, stranger, clock, 1)

    member_client = signed_in_client(app, mailbox, member.email)
    assert get(member_client, "/admin/alerts").status_code == 403
    page = get(member_client, "/devices")
    assert (
        member_client.post(
            f"/admin/alerts/{mine}/resolve", data={"csrf_token": csrf_from(page.text)}
        ).status_code
        == 403
    )

    client = signed_in_client(app, mailbox, admin.email)
    page = get(client, "/admin/alerts")
    assert mine in page.text and theirs not in page.text
    answer = client.post(
        f"/admin/alerts/{theirs}/resolve", data={"csrf_token": csrf_from(page.text)}
    )
    assert answer.status_code == 404
    with services.session() as db:  # the dashboard's count, on the admin's scoped session
        scope_to_tenant(db, tenant.id)
        assert alert_inbox.open_alert_count(db) == 1
        raise_some(services, other, stranger, clock, 2)
    with services.session() as db:
        scope_to_tenant(db, other.id)
        assert alert_inbox.open_alert_count(db) == 3
    with services.session() as db:
        assert db.get_one(Alert, theirs).status == "open"


def test_high_alerts_are_emailed_to_admins_when_the_policy_says_so(
    services, clock, mailbox, member, admin, tenant, make
):
    make.user("off@acme.test", tenant, role="admin", disabled=True)
    make.user("bob@acme.test", tenant)  # a member: not told
    raise_some(services, tenant, member, clock, 1, kind="impossible_travel", severity="high")
    [mail] = mailbox.wait_for(admin.email)
    assert mail["Subject"] == "[Holdfast] High alert: Impossible travel (sam@acme.test)"
    assert "Finding number 0" in plain_text(mail)
    outbox_drained(services)
    assert mailbox.to("off@acme.test") == [] and mailbox.to("bob@acme.test") == []

    raise_some(services, tenant, member, clock, 1, kind="code_burst", severity="medium")
    make.policy(tenant, notify_high_alerts=False)
    raise_some(services, tenant, member, clock, 1, kind="impossible_travel", severity="high")
    outbox_drained(services)
    assert mailbox.count(admin.email) == 1


# --- "This wasn't me" -----------------------------------------------------------------------


def not_me_link(mailbox, email):
    mail = mailbox.newest(email, "New sign-in")
    match = re.search(r"http://localhost(/account/not-me/\S+)", plain_text(mail))
    assert match
    return match.group(1)


def test_this_wasnt_me_ends_that_session_and_alerts_admins(
    app, mailbox, member, admin, services, clock
):
    signed_in_client(app, mailbox, member.email)
    stranger = signed_in_client(app, mailbox, member.email, user_agent=UA_IPAD, trust=True)
    stranger_session = session_id_of(stranger, services, clock)
    path = not_me_link(mailbox, member.email)

    reader = app.test_client()  # the person's mail app: not signed in
    confirm = get(reader, path)
    assert confirm.status_code == 200
    assert "Safari on iOS" in confirm.text and HOME in confirm.text
    with services.session() as db:
        assert db.scalars(select(NotMeToken)).one().used_at is None  # GET changes nothing

    done = reader.post(path, data={"csrf_token": csrf_from(confirm.text)})
    assert done.status_code == 200
    assert "That sign-in was ended" in done.text and "Sign in again" in done.text
    with services.session() as db:
        session = db.get_one(UserSession, stranger_session)
        assert session.end_reason == "suspicious"
        assert not db.get_one(Device, session.device_id).is_trusted(clock.now())
        assert db.scalars(select(NotMeToken)).one().used_at == clock.now()
        kinds = set(db.scalars(select(Event.kind)))
        assert {"sign_in.disowned", "device.untrusted", "session.ended"} <= kinds
    [alert] = alerts_of(services, "sign_in_disowned")
    assert (alert.severity, alert.session_id) == ("high", stranger_session)
    assert mailbox.newest(admin.email, "Person reported")

    # The stranger is out, with the reason.
    bounced = get(stranger, "/devices", ua=UA_IPAD)
    assert bounced.location.startswith("/login?reason=suspicious")

    # The link works once.
    again = reader.post(path, data={"csrf_token": csrf_from(confirm.text)})
    assert again.status_code == 422 and "used already" in again.text
    assert len(alerts_of(services, "sign_in_disowned")) == 1


def test_this_wasnt_me_link_expires_and_unknown_links_say_so(app, mailbox, member, services, clock):
    signed_in_client(app, mailbox, member.email)
    signed_in_client(app, mailbox, member.email, user_agent=UA_IPAD)
    path = not_me_link(mailbox, member.email)
    reader = app.test_client()
    clock.advance(days=7, seconds=1)
    expired = get(reader, path)
    assert expired.status_code == 422 and "expired" in expired.text
    unknown = get(reader, "/account/not-me/" + "x" * 43)
    assert unknown.status_code == 404 and "not valid" in unknown.text
    with services.session() as db:
        assert (
            db.scalar(
                select(func.count()).select_from(Alert).where(Alert.kind == "sign_in_disowned")
            )
            == 0
        )


# --- the slow-down over HTTP ----------------------------------------------------------------


def test_slowed_code_sign_in_answers_429_with_retry_after(app, mailbox, member, services, clock):
    with services.session(write=True) as db:
        db.add(
            CodeSlowdown(
                key=services.hasher.hash("code slow-down", member.email),
                failures=100,
                checks_after=clock.now() + timedelta(minutes=4),
                updated_at=clock.now(),
            )
        )
        db.commit()
    client = app.test_client()
    answer = login(client, mailbox, member.email)
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "240"
    assert "Try again in 4 minutes" in answer.text
    clock.advance(minutes=4)
    page = get(client, "/login/code")
    answer = client.post(
        "/login/code",
        data={"code": mailbox.last_code(member.email), "csrf_token": csrf_from(page.text)},
    )
    assert answer.status_code == 302 and answer.location == "/devices"
