"""static/js/holdfast-session.js in Chromium, from the example page at /api/docs/example:
with the page's own session cookie (same origin, JSON writes) and with a bearer token."""

from __future__ import annotations

import pytest

from app.core.sessions import end_session
from app.models import UserSession
from testkit.api import post_json
from testkit.browser import browser_login, wait_until

pytestmark = pytest.mark.browser

START_CLIENT = """
async (options) => {
  window.seen = [];
  window.hf = new HoldfastSession(Object.assign({
    onSessionExtended: (s) => window.seen.push(["extended", s.expiresIn, s.token.length > 0]),
    onSessionExpired: (e) => window.seen.push(["expired", e.code, e.status]),
  }, options));
  return await window.hf.getSessionStatus();
}
"""


def api_session(base: str, mailbox, email: str) -> dict:
    """Another device of the same person, signed in through the JSON API."""
    before = mailbox.count(email)
    challenge = post_json(f"{base}/api/auth/login", {"email": email})
    return post_json(
        f"{base}/api/auth/verify",
        {
            "challengeId": challenge["challengeId"],
            "code": mailbox.last_code(email, before + 1),
            "deviceId": f"phone-app-{before}-0123456789abcdef",
        },
    )


def stored(live_app, session_id: str) -> UserSession:
    with live_app.extensions["holdfast"].session() as db:
        return db.get_one(UserSession, session_id)


def test_js_client_with_the_session_cookie(browser, live_server, live_app, live_make, mailbox):
    # A short idle timeout puts the deadline inside extendThreshold at once.
    tenant = live_make.tenant("clinic", idle_timeout=120)
    live_make.user("sarah@clinic.test", tenant)
    context = browser.new_context()
    page = context.new_page()
    browser_login(page, live_server, mailbox, "sarah@clinic.test")
    phone = api_session(live_server, mailbox, "sarah@clinic.test")

    page.goto(f"{live_server}/api/docs/example")
    status = page.evaluate(START_CLIENT, {"autoExtend": True, "extendThreshold": 300})
    assert status["valid"] is True
    assert 0 < status["expiresIn"] <= 120
    assert status["deviceCount"] == 2
    own_id = status["sessionId"]

    # autoExtend: the deadline is within the threshold, so the client extends by itself
    # (a cookie-authenticated JSON POST from this origin) and says so.
    wait_until(page, "window.seen.some(e => e[0] === 'extended')")
    extended = page.evaluate("window.seen.find(e => e[0] === 'extended')")
    assert extended[2] is True and 0 < extended[1] <= 120

    listed = page.evaluate("window.hf.getSessions()")
    assert {s["id"] for s in listed} == {own_id, phone["sessionId"]}
    assert [s["current"] for s in listed if s["id"] == own_id] == [True]

    assert page.evaluate("(id) => window.hf.revokeSession(id)", phone["sessionId"]) is True
    assert stored(live_app, phone["sessionId"]).end_reason == "revoked_by_user"

    for _ in range(2):
        api_session(live_server, mailbox, "sarah@clinic.test")
    assert page.evaluate("window.hf.revokeAllOtherSessions()") == {"revoked": 2}
    assert [s["id"] for s in page.evaluate("window.hf.getSessions()")] == [own_id]

    # Ended from elsewhere: the next status check reports it and calls onSessionExpired.
    services = live_app.extensions["holdfast"]
    with services.session(write=True) as db:
        end_session(
            db, db.get_one(UserSession, own_id), "revoked_by_admin", now=services.clock.now()
        )
        db.commit()
    after = page.evaluate("window.hf.getSessionStatus()")
    assert after == {"valid": False, "code": "invalid_session", "error": after["error"]}
    assert "administrator" in after["error"]
    assert page.evaluate("window.seen.filter(e => e[0] === 'expired')") == [
        ["expired", "invalid_session", 401]
    ]
    context.close()


def test_js_client_with_a_bearer_token(browser, live_server, live_app, live_make, mailbox):
    tenant = live_make.tenant("ward")
    live_make.user("ade@ward.test", tenant)
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{live_server}/api/docs/example")
    # Sign in through the JSON API from the page, as a single-page app would.
    challenge = page.evaluate("""async () => {
      const r = await fetch("/api/auth/login", {method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({email: "ade@ward.test"})});
      return [r.status, await r.json()];
    }""")
    assert challenge[0] == 202
    issued = page.evaluate(
        """async ([id, code]) => {
      const r = await fetch("/api/auth/verify", {method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({challengeId: id, code: code, deviceName: "Ward tablet"})});
      return [r.status, await r.json()];
    }""",
        [challenge[1]["challengeId"], mailbox.last_code("ade@ward.test")],
    )
    assert issued[0] == 201
    token = issued[1]["token"]
    assert not [c for c in context.cookies() if c["name"] == "holdfast_session"]

    status = page.evaluate(START_CLIENT, {"autoExtend": False, "token": token})
    assert status["valid"] is True and status["sessionId"] == issued[1]["sessionId"]
    listed = page.evaluate("window.hf.getSessions()")
    assert [(s["device"], s["current"]) for s in listed] == [("Ward tablet", True)]
    fresh = page.evaluate("window.hf.extend()")
    assert fresh["token"] != token
    assert page.evaluate("window.hf.token") == fresh["token"]

    assert page.evaluate("window.hf.logout()") is True
    assert stored(live_app, issued[1]["sessionId"]).end_reason == "logout"
    # A client holding the old token learns the session is over.
    gone = page.evaluate(
        """async (token) => {
      const other = new HoldfastSession({autoExtend: false, token: token});
      try { await other.getSessions(); return null; }
      catch (e) { return [e.name, e.status, e.code]; }
    }""",
        token,
    )
    assert gone == ["HoldfastSessionError", 401, "invalid_session"]
    context.close()
