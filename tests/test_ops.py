"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

import json

import pytest

from app import refuse_coroutines
from tests.conftest import csrf_from


def test_healthz_and_readyz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready"}


def test_metrics_count_sign_ins_failures_and_endings(app, mailbox, member, signed_in):
    page = signed_in.get("/devices")
    signed_in.post("/logout", data={"csrf_token": csrf_from(page.text)})
    text = app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).text
    assert "holdfast_sign_ins_total 1.0" in text
    assert "holdfast_sessions_live 0.0" in text
    assert 'holdfast_sessions_ended_total{reason="logout"} 1.0' in text
    assert 'holdfast_request_seconds_count{endpoint="devices.index",method="GET"}' in text


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
    assert "holdfast_sessions_live" in ok.text


def test_logs_are_json_with_request_id_and_session_but_no_secrets(
    app, mailbox, member, capsys, services, clock
):
    from tests.conftest import login, session_id_of

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
