"""The audit log in words (app.web.audit_words): every event kind Holdfast records has its
sentence; the admin's audit page says who did what to whom on which device, by name,
with the raw kind and JSON behind "Details"; the CSV keeps the raw fields; German reads
German; an unknown kind and an erased person are still said, never as raw ids."""

from __future__ import annotations

import ast
import csv
import html
import io
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.core import events, sessions
from app.models import User, UserSession
from app.web.audit_words import SENTENCES
from testkit.browser import browser_login, wait_until
from testkit.rows import add_session
from testkit.values import UA_MAC_CHROME

SHOTS = Path(os.environ.get("HOLDFAST_SCREENSHOTS", "test-results/screenshots"))
APP = Path(__file__).parent.parent / "app"
#: the functions that write an audit event, and which positional argument is its kind
RECORDERS = {"record": 1, "record_admin_action": 1, "record_device_event": 1, "_audit": 3}
SAID = re.compile(
    r'<tr id="event-(\d+)" data-kind="([a-z_.]+)">.*?<td class="said">(.*?)</td>', re.S
)


def recorded_kinds() -> set[str]:
    """Every literal event kind passed to a recording function anywhere in app/, and the
    kinds of alert_inbox's transitions."""
    kinds = set()
    for path in APP.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            if name not in RECORDERS or len(node.args) <= RECORDERS[name]:
                continue
            kind = node.args[RECORDERS[name]]
            if isinstance(kind, ast.Constant) and isinstance(kind.value, str) and "." in kind.value:
                kinds.add(kind.value)
    return kinds


def test_every_recorded_event_kind_has_its_sentence():
    kinds = recorded_kinds()
    assert {"session.created", "session.ended", "device.renamed", "user.role_changed"} <= kinds
    assert kinds - set(SENTENCES) == set()


def sentences(page: str) -> dict[str, list[str]]:
    """The page's sentences by event kind, tags removed (newest first)."""
    found: dict[str, list[str]] = {}
    for _id, kind, said in SAID.findall(page):
        found.setdefault(kind, []).append(html.unescape(re.sub(r"<[^>]+>", "", said)).strip())
    return found


def named(services, **names: str) -> None:
    """Give people names (``named(services, usr_1="Sam")``); keyword: the person's id."""
    with services.session(write=True) as db:
        for user_id, name in names.items():
            db.get_one(User, user_id).name = name
        db.commit()


def end(services, session_id: str, reason: str, *, now: datetime, actor_id=None) -> str:
    """End a session as the core does (its audit event included); its device's id."""
    with services.session(write=True) as db:
        row = db.get_one(UserSession, session_id)
        sessions.end_session(db, row, reason, now=now, actor_id=actor_id, origin=events.SYSTEM)
        db.commit()
        return row.device_id


def record(services, kind: str, *, now: datetime, tenant, **fields) -> None:
    """Write one audit event, as a core module would."""
    with services.session(write=True) as db:
        events.record(db, kind, now=now, tenant_id=tenant.id, **fields)
        db.commit()


def own_activity(page: str) -> list[str]:
    """The sentences of the security page's "Your recent activity", tags removed."""
    activity = re.search(r'<article id="my-activity".*?</article>', page, re.S).group(0)
    return [
        html.unescape(re.sub(r"<[^>]+>", "", said)).strip()
        for said in re.findall(r'<span class="said">(.*?)</span>', activity)
    ]


def test_the_audit_page_says_each_event_in_words(
    admin_client, services, clock, tenant, admin, member
):
    named(services, **{member.id: "Sam", admin.id: "Ada"})
    phone = add_session(
        services, tenant, member, created=clock.now(), kind="phone", os="iOS", browser="Safari"
    )
    laptop = add_session(services, tenant, member, created=clock.now(), device_name="Work laptop")
    device_id = end(services, phone, "revoked_by_user", now=clock.now(), actor_id=member.id)
    end(services, laptop, "revoked_by_admin", now=clock.now(), actor_id=admin.id)
    record(
        services,
        "device.renamed",
        now=clock.now(),
        tenant=tenant,
        actor_id=member.id,
        subject_id=member.id,
        device_id=device_id,
        old=None,
        new="Sam's iPhone",
    )
    # a kind no rule knows yet, about a person since erased
    record(services, "future.thing", now=clock.now(), tenant=tenant, actor_id="usr_gone")

    page = admin_client.get("/admin/audit")

    said = sentences(page.text)
    assert said["session.ended"] == [
        "Ada ended Sam's session on Work laptop",
        "Sam ended the session on Safari on iOS",
    ]
    assert said["device.renamed"] == ["Sam renamed Safari on iOS to Sam's iPhone"]
    assert said["future.thing"] == ["an erased person: future.thing"]
    assert said["user.created"][0] == "Holdfast added Sam"
    assert f'<a href="/admin/users/{member.id}">Sam</a>' in page.text
    # The raw kind and details are one click away, in <details>.
    row = re.search(r'<tr id="event-\d+" data-kind="device.renamed">.*?</tr>', page.text, re.S)
    assert "<details><summary>Details" in row.group(0)
    assert "&#34;device_id&#34;: &#34;" + device_id in row.group(0)
    # The event page says it too, and keeps every raw field.
    event_id = re.search(r'event-(\d+)" data-kind="device.renamed"', page.text).group(1)
    full = admin_client.get(f"/admin/audit/{event_id}").text
    assert "Sam</a> renamed Safari on iOS to Sam&#39;s iPhone</h1>" in full
    assert "<code>device.renamed</code>" in full and device_id in full

    # The CSV keeps the raw fields: kinds, ids and JSON details, no sentences.
    rows = list(csv.DictReader(io.StringIO(admin_client.get("/admin/audit.csv").text)))
    renamed = next(r for r in rows if r["kind"] == "device.renamed")
    assert renamed["actor_id"] == member.id and device_id in renamed["details"]
    assert not any("renamed Safari" in value for r in rows for value in r.values())


def test_the_sentences_are_german_for_a_german_admin(
    admin_client, services, clock, tenant, admin, member
):
    with services.session(write=True) as db:
        db.get_one(User, admin.id).language = "de"
        db.commit()
    named(services, **{member.id: "Sam"})
    phone = add_session(
        services,
        tenant,
        member,
        created=clock.now() - timedelta(minutes=5),
        kind="phone",
        os="iOS",
        browser="Safari",
    )
    end(services, phone, "idle_expired", now=clock.now())
    page = admin_client.get("/admin/audit").text
    said = sentences(page)
    assert said["session.ended"] == [
        "Die Sitzung von Sam auf Safari auf iOS endete nach einer Zeit ohne Aktivität"
    ]
    assert "<h1>Protokoll</h1>" in page and ">Details<" in page


@pytest.mark.browser
def test_the_audit_page_in_words_at_desk_and_phone_widths(
    browser, live_server, live_make, live_app, mailbox
):
    """In Chromium: the sentences at 1280 and 390 px (pictured in docs/screenshots with
    HOLDFAST_SCREENSHOTS=docs/screenshots), no sideways scrolling, and "Details" opens
    on the raw kind and JSON."""
    services = live_app.extensions["holdfast"]
    tenant = live_make.tenant("ward")
    ada = live_make.user("ada@ward.test", tenant, role="admin", name="Ada")
    sam = live_make.user("sam@ward.test", tenant, name="Sam")
    now = datetime.now(UTC)
    phone = add_session(
        services,
        tenant,
        sam,
        created=now - timedelta(hours=3),
        kind="phone",
        os="iOS",
        browser="Safari",
        device_name="Sam's iPhone",
    )
    laptop = add_session(
        services, tenant, sam, created=now - timedelta(hours=2), os="Windows", browser="Edge"
    )
    end(services, phone, "revoked_by_user", now=now, actor_id=sam.id)
    end(services, laptop, "idle_expired", now=now)
    record(
        services,
        "user.role_changed",
        now=now,
        tenant=tenant,
        actor_id=ada.id,
        subject_id=sam.id,
        old="member",
        new="admin",
    )
    context = browser.new_context(user_agent=UA_MAC_CHROME, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    browser_login(page, live_server, mailbox, "ada@ward.test")
    page.goto(f"{live_server}/admin/audit")
    said = page.locator("td.said")
    assert "Ada made Sam an admin" in said.all_inner_texts()
    assert "Ada signed in on Chrome on macOS" in said.all_inner_texts()
    assert (
        "Sam's session on Edge on Windows ended after a period of inactivity"
        in said.all_inner_texts()
    )
    assert "Sam ended the session on Sam's iPhone" in said.all_inner_texts()
    details = page.locator("tr[data-kind='user.role_changed'] details")
    assert not details.locator("pre").is_visible()
    details.locator("summary").click()
    assert '"new": "admin"' in details.locator("pre").inner_text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "admin-audit-1280.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server}/admin/audit")
    wait_until(page, "document.readyState === 'complete'")
    page.locator("tr[data-kind='user.role_changed'] summary").click()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(SHOTS / "admin-audit-390.png"), full_page=True)
    context.close()


def test_a_person_sees_their_own_recent_activity_and_signed_out_sessions(
    signed_in, services, clock, tenant, member, admin
):
    """/account/security: the person's own events of the last 30 days in the same words
    (no links to admin pages, nobody else's events, nothing older), and the sessions that
    ended in that time with why."""
    laptop = add_session(
        services,
        tenant,
        member,
        created=clock.now() - timedelta(hours=2),
        device_name="Work laptop",
    )
    old = add_session(
        services,
        tenant,
        member,
        created=clock.now() - timedelta(days=40),
        os="Linux",
        browser="Firefox",
    )
    named(services, **{admin.id: "Ada"})
    end(services, laptop, "revoked_by_admin", now=clock.now(), actor_id=admin.id)
    end(services, old, "logout", now=clock.now() - timedelta(days=39), actor_id=member.id)
    record(  # someone else's: never shown to Sam
        services,
        "user.role_changed",
        now=clock.now(),
        tenant=tenant,
        actor_id=admin.id,
        subject_id=admin.id,
        old="member",
        new="admin",
    )

    page = signed_in.get("/account/security").text

    said = own_activity(page)
    # about themselves, a person reads "you", never their own name
    assert said[0] == "Ada ended your session on Work laptop"
    assert "A sign-in code was sent to you" in said
    assert any(s.startswith("You signed in on ") for s in said)
    assert not any("sam@acme.test" in s for s in said)
    assert not any("Firefox on Linux" in s or "an admin" in s for s in said)
    assert "/admin/" not in re.search(r'<article id="my-activity".*?</article>', page, re.S)[0]
    signed_out = re.search(r'<article id="my-signed-out".*?</article>', page, re.S).group(0)
    assert "Work laptop" in signed_out
    assert "An administrator signed you out." in signed_out
    assert "Firefox on Linux" not in signed_out  # ended 39 days ago


def test_a_person_reads_you_about_what_they_did_and_what_was_done_to_them(
    signed_in, services, clock, tenant, member, admin
):
    """Their own page says "You…" in their language; the admin's log, about the same
    events, keeps their names."""
    named(services, **{member.id: "Sam", admin.id: "Ada"})
    phone = add_session(
        services, tenant, member, created=clock.now(), kind="phone", os="iOS", browser="Safari"
    )
    tablet = add_session(services, tenant, member, created=clock.now(), device_name="Tablet")
    end(services, phone, "revoked_by_user", now=clock.now(), actor_id=member.id)
    end(services, tablet, "idle_expired", now=clock.now())
    record(
        services,
        "user.role_changed",
        now=clock.now(),
        tenant=tenant,
        actor_id=admin.id,
        subject_id=member.id,
        old="member",
        new="admin",
    )
    record(
        services,
        "user.sessions_ended",
        now=clock.now(),
        tenant=tenant,
        actor_id=member.id,
        subject_id=member.id,
        count=2,
    )

    said = own_activity(signed_in.get("/account/security").text)
    assert said[:4] == [
        "You ended all of your sessions (2)",
        "Ada made you an admin",
        "Your session on Tablet ended after a period of inactivity",
        "You ended the session on Safari on iOS",
    ]

    with services.session(write=True) as db:
        db.get_one(User, member.id).language = "de"
        db.commit()
    german = own_activity(signed_in.get("/account/security").text)
    assert german[:4] == [
        "Sie haben alle Ihre Sitzungen beendet (2)",
        "Ada hat Sie zum Admin gemacht",
        "Ihre Sitzung auf Tablet endete nach einer Zeit ohne Aktivität",
        "Sie haben die Sitzung auf Safari auf iOS beendet",
    ]


def test_the_admin_log_still_names_the_admin_in_their_own_events(
    admin_client, services, clock, tenant, admin, member
):
    """The audit log is about everyone: an admin reading it sees their own name there,
    as others do, not "You"."""
    named(services, **{member.id: "Sam", admin.id: "Ada"})
    laptop = add_session(services, tenant, member, created=clock.now(), device_name="Work laptop")
    end(services, laptop, "revoked_by_admin", now=clock.now(), actor_id=admin.id)
    said = sentences(admin_client.get("/admin/audit").text)
    assert said["session.ended"] == ["Ada ended Sam's session on Work laptop"]
    assert not any(s.startswith("You ") for kind in said.values() for s in kind)
