"""Who may use the admin console, over HTTP.

* The isolation walk: every route under /admin and /api/admin (read from the app's URL
  map, so a new route is walked without anyone remembering to add it) is called by this
  tenant's admin with the ids of another tenant's session, person, event and alert:
  each answers 404 and changes nothing. Pages without ids never show the other tenant.
* A member gets 403 on every one of those routes, and an anonymous caller is sent to sign
  in. An admin whose code is older than 15 minutes is asked for a new one (pages, htmx
  polls and JSON alike) and comes back after it.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import Flask

from app import models
from testkit.rows import add_session, events_of, session_row, user_row
from testkit.values import START
from testkit.web import HTMX, csrf_from, sign_in, token_from

PREFIXES = ("/admin", "/api/admin")
#: route arguments that are not ids, and a valid value for each
PLAIN_ARGS = {"name": "live-by-kind"}
API_HEADERS = {"Origin": "http://localhost"}


def admin_routes(app: Flask) -> list[tuple[object, str]]:
    """(rule, method) for every admin route, HEAD and OPTIONS aside."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(PREFIXES):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                found.append((rule, method))
    assert len(found) > 10, "the admin routes did not register"
    return found


def call(client, rule, method, values, token, extra_form=None):
    """Call ``rule`` with ``method`` the way its page or API client would."""
    url = rule.build(values, append_unknown=False)[1]
    if rule.rule.startswith("/api/"):
        return client.open(url, method=method, json={}, headers=API_HEADERS)
    if method == "GET":
        return client.get(url)
    return client.open(url, method=method, data={"csrf_token": token, **(extra_form or {})})


def _other_tenants_row(services, model_name, **fields):
    """Write a row of another issue's model if that model exists; its id, else None."""
    model = getattr(models, model_name, None)
    if model is None:
        return None
    with services.session(write=True) as db:
        row = model(**fields)
        db.add(row)
        db.commit()
        return row.id


@pytest.fixture
def outsider(make, services):
    """Another tenant with a person, a live session, an event, and (where those features
    exist) an alert, a webhook endpoint and a delivery: route argument name -> id."""
    other = make.tenant("globex")
    eve = make.user("eve@globex.test", other, role="admin")
    session_id = add_session(
        services,
        other,
        eve,
        created=START - timedelta(minutes=5),
        last_seen=START - timedelta(minutes=1),
    )
    [event] = events_of(services, "user.created", subject_id=eve.id)
    ids = {"session_id": session_id, "user_id": eve.id, "event_id": event.id, "email": eve.email}
    ids["alert_id"] = _other_tenants_row(
        services,
        "Alert",
        tenant_id=other.id,
        created_at=START,
        kind="new_device",
        severity="high",
        status="open",
        user_id=eve.id,
    )
    ids["endpoint_id"] = _other_tenants_row(
        services,
        "WebhookEndpoint",
        tenant_id=other.id,
        url="https://globex.test/hook",
        kinds=["session.ended"],
        secret_encrypted=b"x",
        created_at=START,
    )
    if ids["endpoint_id"]:
        ids["delivery_id"] = _other_tenants_row(
            services,
            "WebhookDelivery",
            tenant_id=other.id,
            endpoint_id=ids["endpoint_id"],
            event_id=event.id,
            kind="user.created",
            body="{}",
            status="failed",
            created_at=START,
            next_attempt_at=START,
        )
    return {name: value for name, value in ids.items() if value is not None}


def fill(rule, ids):
    """Values for the rule's arguments: the given ids; for an argument this walk has no
    row for yet, an id that exists nowhere (still a 404: add a real row above)."""
    values = {}
    for name in rule.arguments:
        if name in PLAIN_ARGS:
            values[name] = PLAIN_ARGS[name]
        elif name in ids:
            values[name] = ids[name]
        else:
            values[name] = 987654321 if f"int:{name}" in rule.rule else f"{name}_of_nobody"
    return values


def test_isolation_walk_every_admin_route_answers_404_for_another_tenants_ids(
    app, mailbox, admin, outsider, services
):
    client = sign_in(app, mailbox, admin.email)
    token = token_from(client, "/admin/sessions")
    walked = []
    for rule, method in admin_routes(app):
        # A form that names sessions by id gets the other tenant's session too.
        form = {"session": outsider["session_id"]}
        answer = call(client, rule, method, fill(rule, outsider), token, form)
        if rule.arguments - set(PLAIN_ARGS) or rule.endpoint == "admin.end_selected":
            assert answer.status_code == 404, f"{method} {rule.rule}: {answer.status_code}"
            walked.append(rule.rule)
        elif method == "GET":
            assert answer.status_code in (200, 422), f"GET {rule.rule}: {answer.status_code}"
            body = answer.get_data(as_text=True)
            for theirs in ("email", "session_id", "user_id"):
                assert outsider[theirs] not in body, f"{rule.rule} shows their {theirs}"
    assert {
        "/admin/sessions/<session_id>/end",
        "/admin/users/<user_id>",
        "/admin/audit/<int:event_id>",
    } <= set(walked)
    # Nothing of theirs changed.
    assert session_row(services, outsider["session_id"]).ended_at is None
    assert user_row(services, outsider["user_id"]).disabled is False
    assert user_row(services, outsider["user_id"]).role == "admin"
    assert events_of(services, "session.ended") == []


def test_filters_naming_another_tenants_people_find_nothing(app, mailbox, admin, outsider):
    client = sign_in(app, mailbox, admin.email)
    assert client.get(f"/admin/sessions?status=all&user={outsider['user_id']}").status_code == 404
    audit = client.get(f"/admin/audit?subject={outsider['user_id']}")
    assert audit.status_code == 200 and "No events match" in audit.text
    by_email = client.get(f"/admin/audit?actor={outsider['email']}")
    assert by_email.status_code == 422 and "Nobody in this tenant" in by_email.text


def test_a_member_gets_403_on_every_admin_route(app, mailbox, member, outsider, services):
    client = sign_in(app, mailbox, member.email)
    token = token_from(client)
    for rule, method in admin_routes(app):
        answer = call(client, rule, method, fill(rule, {"user_id": member.id}), token)
        assert answer.status_code == 403, f"{method} {rule.rule}: {answer.status_code}"
    assert user_row(services, member.id).role == "member"
    assert events_of(services, "user.role_changed") == []


def test_signed_out_callers_are_sent_to_sign_in(client):
    page = client.get("/admin/sessions?status=all")
    assert page.status_code == 302
    assert page.location.startswith("/login?next=/admin/sessions")
    poll = client.get("/admin/figures", headers=HTMX)
    assert poll.headers["HX-Redirect"].startswith("/login")
    assert client.get("/api/admin/sessions").status_code == 401


def test_admin_work_needs_a_code_from_the_last_15_minutes(
    app, mailbox, admin, member, services, clock, tenant
):
    client = sign_in(app, mailbox, admin.email)
    target = add_session(services, tenant, member, created=START, last_seen=START)
    token = token_from(client, "/admin/sessions")
    clock.advance(minutes=16)

    page = client.get("/admin/sessions?status=all")
    assert page.status_code == 302
    assert page.location == "/login/again?next=/admin/sessions?status%3Dall"
    # The htmx poll is told to load the confirm page, not to swap it into the figures.
    poll = client.get(
        "/admin/figures", headers={**HTMX, "HX-Current-URL": "http://localhost/admin?x=1"}
    )
    assert poll.headers["HX-Redirect"] == "/login/again?next=/admin?x%3D1"
    assert "<html" not in poll.text
    chart = client.get("/admin/charts/live-by-kind.json", headers={"Accept": "application/json"})
    assert chart.status_code == 401 and chart.json["code"] == "fresh_login_required"
    refused = client.post(f"/admin/sessions/{target}/end", data={"csrf_token": token})
    assert refused.location.startswith("/login/again")
    assert session_row(services, target).ended_at is None

    # A new code, and the admin is back where they were going.
    confirm = client.get(page.location)
    send = re.search(r'name="send-csrf_token"[^>]*value="([^"]+)"', confirm.text).group(1)
    client.post(page.location, data={"send-csrf_token": send})
    code = mailbox.last_code(admin.email, 2)
    entered = client.post(
        "/login/again",
        data={"code": code, "csrf_token": csrf_from(client.get("/login/again").text)},
    )
    assert entered.location == "/admin/sessions?status=all"
    assert client.get(entered.location).status_code == 200
