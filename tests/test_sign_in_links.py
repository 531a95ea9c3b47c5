"""The sign-in link in every code mail (issue 24): it signs in the browser that asked for
the code (its flow cookie), does nothing elsewhere but say so, and works once, for as long
as the code."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
from sqlalchemy import select

from app.core import events, mfa, totp
from app.mail import plain_text
from app.models import User, UserSession
from testkit.web import LINK, csrf_from, login
from testkit.web import ask_link as ask
from testkit.web import follow_link as follow


def sessions_of(db, user):
    return list(db.scalars(select(UserSession).where(UserSession.user_id == user.id)))


def test_the_link_signs_in_the_browser_that_asked_once(client, mailbox, member, db):
    link = ask(client, mailbox, member.email)
    answer = follow(client, link)
    assert answer.status_code == 302 and answer.location == "/devices"
    assert client.get_cookie("holdfast_session") is not None
    (session,) = sessions_of(db, member)
    assert session.sign_in_method == "link"
    db.rollback()
    client.delete_cookie("holdfast_session")
    again = follow(client, link)  # the flow was cleared at sign-in: this browser no longer asked
    assert again.status_code == 409
    assert len(sessions_of(db, member)) == 1


def test_the_link_does_nothing_in_another_browser(app, client, mailbox, member, db):
    link = ask(client, mailbox, member.email)
    elsewhere = app.test_client()
    answer = follow(elsewhere, link)
    assert answer.status_code == 409
    assert "works only in the browser where the code was asked for" in answer.text
    assert elsewhere.get_cookie("holdfast_session") is None
    assert sessions_of(db, member) == []
    db.rollback()
    # ...and it still works where it belongs.
    assert follow(client, link).location == "/devices"


def test_a_link_dies_with_its_code(client, mailbox, member, clock, db):
    link = ask(client, mailbox, member.email)
    clock.advance(minutes=10, seconds=1)
    expired = follow(client, link)
    assert expired.status_code == 302 and expired.location == "/login/code"
    assert "expired" in client.get("/login/code").text
    # A code entered first uses the link up too.
    link = ask(client, mailbox, member.email)
    page = client.get("/login/code")
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    code = mailbox.last_code(member.email, mailbox.count(member.email))
    assert client.post("/login/code", data={"code": code, "csrf_token": token}).status_code == 302
    client.delete_cookie("holdfast_session")
    assert follow(client, link).status_code == 409  # the flow ended with the sign-in
    assert len(sessions_of(db, member)) == 1


def test_a_wrong_secret_is_refused(client, mailbox, member, db):
    link = ask(client, mailbox, member.email)
    forged = link[: link.rindex("/") + 1] + "x" * 32
    answer = follow(client, forged)
    assert answer.location == "/login/code"
    assert "not valid" in client.get("/login/code").text
    assert sessions_of(db, member) == []
    db.rollback()
    assert follow(client, link).location == "/devices"


def test_the_link_leads_to_the_second_step_like_the_code(client, mailbox, member, services):
    with services.session(write=True) as s:
        user = s.get_one(User, member.id)
        user.totp_secret = totp._seal(services.hasher, user.id, pyotp.random_base32())
        user.totp_enabled_at = services.clock.now()
        mfa.make_recovery_codes(
            s, services.hasher, user, now=services.clock.now(), origin=events.SYSTEM
        )
        s.commit()
    link = ask(client, mailbox, member.email)
    answer = follow(client, link)
    assert answer.location == "/login/mfa"
    assert client.get_cookie("holdfast_session") is None


# --- the fresh sign-in's mail ("Confirm it's you") --------------------------------------


def ask_again(client, mailbox, email, next_url="/account/security"):
    """Ask for a fresh sign-in's code on /login/again; the path of the mail's link."""
    before = mailbox.count(email)
    page = client.get(f"/login/again?next={next_url}")
    send = re.search(r'name="send-csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    sent = client.post(f"/login/again?next={next_url}", data={"send-csrf_token": send})
    assert sent.status_code == 302
    mailbox.last_code(email, before + 1)
    match = LINK.search(plain_text(mailbox.to(email)[-1]))
    assert match, "no link in the fresh sign-in's mail"
    return match.group(2)


def stale(services, db, member):
    """Make the member's live session's sign-in 20 minutes old; its id."""
    with services.session(write=True) as s:
        (session,) = [x for x in sessions_of(s, member) if x.ended_at is None]
        session.authenticated_at = services.clock.now() - timedelta(minutes=20)
        s.commit()
        return session.id


def test_a_fresh_sign_ins_link_works_in_the_browser_that_asked_once(
    app, client, mailbox, member, make, tenant, services, db
):
    assert login(client, mailbox, member.email).status_code == 302
    session_id = stale(services, db, member)
    link = ask_again(client, mailbox, member.email)

    # Other browsers get nothing from it: one signed in as someone else, or none.
    elsewhere = app.test_client()
    assert login(elsewhere, mailbox, make.user("kim@acme.test", tenant).email).status_code == 302
    for browser in (elsewhere, app.test_client()):
        refused = follow(browser, link)
        assert refused.status_code == 409 and "works only in the browser" in refused.text
    fresh_before = db.get_one(UserSession, session_id).authenticated_at
    db.rollback()

    page = client.get(link)
    assert page.status_code == 200 and "Confirm it's you" in page.text
    answer = client.post(link, data={"csrf_token": csrf_from(page.text)})
    assert answer.status_code == 302, answer.text
    assert answer.location == "/account/security", client.get(answer.location).text
    now = services.clock.now()
    refreshed = db.get_one(UserSession, session_id).authenticated_at
    assert refreshed == now and refreshed > fresh_before
    assert client.get("/account/security").status_code == 200
    db.rollback()

    # Once only: the flow has ended, and the link's challenge is used up.
    services.clock.advance(minutes=20)
    again = follow(client, link)
    assert again.status_code == 409
    assert db.get_one(UserSession, session_id).authenticated_at == now


def test_a_fresh_sign_ins_link_leads_to_the_apps_code(client, mailbox, member, services, db):
    assert login(client, mailbox, member.email).status_code == 302
    stale(services, db, member)
    with services.session(write=True) as s:
        user = s.get_one(User, member.id)
        user.totp_secret = totp._seal(services.hasher, user.id, pyotp.random_base32())
        user.totp_enabled_at = services.clock.now()
        s.commit()
    link = ask_again(client, mailbox, member.email)
    assert follow(client, link).location == "/login/again/mfa"


def test_a_wrong_fresh_sign_in_link_is_refused(client, mailbox, member, services, db):
    assert login(client, mailbox, member.email).status_code == 302
    session_id = stale(services, db, member)
    link = ask_again(client, mailbox, member.email)
    forged = link[: link.rindex("/") + 1] + "x" * 32
    answer = follow(client, forged)
    assert answer.status_code == 302 and answer.location.startswith("/login/again")
    assert "not valid" in client.get(answer.location).text
    before = db.get_one(UserSession, session_id).authenticated_at
    assert services.clock.now() - before >= timedelta(minutes=20)
