"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

import json
import logging

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Response

from app import refuse_coroutines
from app.internals import HoldfastResponse
from testkit.web import csrf_from


def test_healthz_and_readyz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready"}


def test_metrics_count_sign_ins_failures_and_endings(app, mailbox, member, signed_in):
    page = signed_in.get("/devices")
    signed_in.post("/logout", data={"csrf_token": csrf_from(page.text)})
    text = app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).text
    assert "holdfast_sign_ins_total 1.0" in text
    assert 'holdfast_sessions_ended_total{reason="logout"} 1.0' in text
    assert 'holdfast_events_total{kind="session.created"} 1.0' in text
    # Latency by method, route (the URL rule) and status.
    assert (
        'holdfast_request_duration_seconds_count{method="GET",route="/devices",status="200"} 1.0'
        in text
    )
    assert 'route="/login/code",status="302"' in text
    # What is read from the database is a gauge named for the whole deployment.
    assert "# TYPE holdfast_cluster_sessions_live gauge" in text
    assert "holdfast_cluster_sessions_live 0.0" in text
    assert "holdfast_cluster_mail_queued 0.0" in text
    assert "holdfast_cluster_mail_oldest_queued_seconds 0.0" in text
    # The release, and the process.
    assert 'holdfast_build_info{python="' in text
    assert "process_resident_memory_bytes" in text


def test_the_mail_queue_is_in_the_metrics(app, services, clock, member, make):
    """What is stuck shows: how many wait, for how long, and what was given up."""
    from sqlalchemy import update

    from app.mail import Message
    from app.models import OutboxMessage
    from app.outbox import queue_message

    services.sender.stop()  # nothing sends: the relay is "down"
    with services.session(write=True) as db:
        for number in range(3):
            queue_message(
                db,
                Message(member.email, f"Waiting {number}", "..."),
                tenant_id=member.tenant_id,
                kind="test",
                now=clock.now(),
            )
        db.commit()
    clock.advance(minutes=5)
    with services.session(write=True) as db:
        db.execute(
            update(OutboxMessage)
            .where(OutboxMessage.subject == "Waiting 0")
            .values(status="failed")
        )
        db.commit()
    text = app.test_client().get("/metrics").text
    assert "holdfast_cluster_mail_queued 2.0" in text
    assert "holdfast_cluster_mail_oldest_queued_seconds 300.0" in text
    assert "holdfast_cluster_mail_undelivered 1.0" in text


def test_metrics_need_the_token_or_loopback(new_app):
    open_app = new_app()
    assert (
        open_app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code
        == 403
    )
    guarded = new_app(METRICS_TOKEN="s3cret-token")
    client = guarded.test_client()
    assert client.get("/metrics").status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200
    assert "holdfast_cluster_sessions_live" in ok.text


def test_logs_are_json_with_request_id_and_session_but_no_secrets(
    app, mailbox, member, capsys, services, clock
):
    from testkit.web import login, session_id_of

    client = app.test_client()
    login(client, mailbox, member.email)
    session_id = session_id_of(client, services, clock)
    capsys.readouterr()
    response = client.get("/devices", headers={"X-Request-ID": "req-12345678"})
    assert response.headers["X-Request-ID"] == "req-12345678"
    lines = [
        json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")
    ]
    entry = next(line for line in lines if line.get("path") == "/devices")
    assert entry["request_id"] == "req-12345678"
    assert entry["session"] == session_id
    assert entry["tenant"] == member.tenant_id
    assert entry["status"] == 200
    token = client.get_cookie("holdfast_session").value
    assert token not in json.dumps(lines)


def test_json_log_times_follow_each_record():
    """The formatter formats the date and time once a second: each record still gets
    its own second and milliseconds."""
    from app.logs import JsonFormatter

    formatter = JsonFormatter()
    times = []
    for created in (1_772_442_000.25, 1_772_442_000.75, 1_772_442_001.5, 1_772_441_999.0):
        record = logging.LogRecord("holdfast.request", logging.INFO, "x.py", 0, "é", (), None)
        record.created, record.msecs = created, (created % 1) * 1000
        entry = json.loads(formatter.format(record))
        assert entry["message"] == "é"
        times.append(entry["time"])
    assert times == [
        "2026-03-02T09:00:00.250Z",
        "2026-03-02T09:00:00.750Z",
        "2026-03-02T09:00:01.500Z",
        "2026-03-02T08:59:59.000Z",
    ]


def test_the_app_refuses_coroutine_views_and_hooks(app):
    """Holdfast calls views and hooks as they are (app.Holdfast.ensure_sync): one that is
    a coroutine function is an error when the app is made, not a failing request."""
    refuse_coroutines(app)  # the app as made has none

    async def page() -> str:
        return "never"

    app.add_url_rule("/async-page", "async_page", page)
    with pytest.raises(TypeError, match="no coroutine"):
        refuse_coroutines(app)
    del app.view_functions["async_page"]

    async def hook() -> None:
        return None

    app.before_request(hook)
    with pytest.raises(TypeError, match="no coroutine"):
        refuse_coroutines(app)


def _answers() -> list[Response]:
    """Answers of every shape werkzeug corrects on the way out, and plain ones."""
    streamed = Response(iter([b"a", b"b"]), content_type="text/plain")
    empty = Response("gone", status=204)
    unchanged = Response("same", status=304, headers={"ETag": '"x"', "Content-Type": "text/a"})
    relative = Response("moved", status=302, headers={"Location": "/dévices?x=1"})
    located = Response("here", headers={"Content-Location": "/ünïcode"})
    json_answer = Response('{"valid": true}', content_type="application/json")
    json_answer.headers.extend((("X-Holdfast-User", "usr_1"), ("X-Holdfast-Role", "member")))
    lengthless = Response("x")
    del lengthless.headers["Content-Length"]
    return [Response("ok"), json_answer, streamed, empty, unchanged, relative, located, lengthless]


@pytest.mark.parametrize("answer", _answers(), ids=lambda r: f"{r.status_code}")
def test_answers_go_out_with_the_headers_werkzeug_would_send(app, answer):
    """HoldfastResponse skips werkzeug's re-checked copy of the headers only where that
    copy would change nothing: what goes on the wire is the same for every shape."""
    environ = EnvironBuilder(path="/x", base_url="https://holdfast.test").get_environ()
    sent = app.response_class.force_type(answer, environ)
    assert isinstance(sent, HoldfastResponse)
    ours = sent.get_wsgi_headers(environ).to_wsgi_list()
    werkzeugs = Response.get_wsgi_headers(sent, environ).to_wsgi_list()
    assert ours == werkzeugs


def test_a_plain_answer_s_headers_are_sent_as_they_are(client):
    """The point of HoldfastResponse: no second pass over an ordinary answer's headers,
    while one whose Location werkzeug would correct still gets its copy."""
    environ = EnvironBuilder(path="/").get_environ()
    plain = HoldfastResponse('{"valid": true}', content_type="application/json")
    assert plain.get_wsgi_headers(environ) is plain.headers
    moved = HoldfastResponse("moved", status=302, headers={"Location": "/devices"})
    assert moved.get_wsgi_headers(environ) is not moved.headers
    answered = client.get("/healthz")
    assert answered.headers["Content-Length"] == str(len(answered.data))
    assert answered.headers["X-Content-Type-Options"] == "nosniff"


def test_metrics_need_the_token_whenever_proxies_are_trusted(new_app):
    """Behind a trusted proxy the caller's address is what the proxy reported: no caller
    can show it is local, so /metrics without HOLDFAST_METRICS_TOKEN refuses everyone,
    saying why."""
    proxied = new_app(TRUSTED_PROXIES=1)
    for headers in ({}, {"X-Forwarded-For": "127.0.0.1"}):
        answer = proxied.test_client().get(
            "/metrics", headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"}
        )
        assert answer.status_code == 403
        assert "needs HOLDFAST_METRICS_TOKEN when HOLDFAST_TRUSTED_PROXIES is set" in answer.text
    guarded = new_app(TRUSTED_PROXIES=1, METRICS_TOKEN="s3cret-token")
    ok = guarded.test_client().get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200 and "holdfast_cluster_sessions_live" in ok.text


def proxy_warnings(capsys) -> list[dict]:
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    return [line for line in lines if line["logger"] == "holdfast.proxy"]


def test_metrics_refuse_a_local_proxys_callers_and_the_log_warns_once(new_app, capsys):
    """No proxy trusted, but requests come through one on this machine: every client
    looks like 127.0.0.1. The log says so once, and /metrics (no token) refuses requests
    that carry X-Forwarded-For while a plain loopback scrape still works."""
    app = new_app()
    client = app.test_client()
    local = {"REMOTE_ADDR": "127.0.0.1"}
    capsys.readouterr()
    assert client.get("/healthz", environ_base=local).status_code == 200
    assert proxy_warnings(capsys) == []  # no proxy seen yet
    through = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"}, environ_base=local)
    assert through.status_code == 403 and "do not come through a proxy" in through.text
    client.get("/healthz", headers={"X-Forwarded-For": "203.0.113.8"}, environ_base=local)
    client.get("/healthz", headers={"X-Forwarded-For": "203.0.113.9"}, environ_base=local)
    [warning] = proxy_warnings(capsys)
    assert warning["level"] == "warning"
    assert "HOLDFAST_TRUSTED_PROXIES is 0" in warning["message"]
    assert client.get("/metrics", environ_base=local).status_code == 200
    # A proxy elsewhere (not on this machine) is not this warning's case.
    other = new_app().test_client()
    other.get(
        "/healthz", headers={"X-Forwarded-For": "1.2.3.4"}, environ_base={"REMOTE_ADDR": "10.0.0.2"}
    )
    assert proxy_warnings(capsys) == []
