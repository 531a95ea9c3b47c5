"""HOLDFAST_REDIS_URL: rate-limit counters in one real redis-server, and the database
taking over while Redis does not answer (never one process's memory)."""

from __future__ import annotations

from sqlalchemy import func, select

from app.models import RateCounter
from testkit.cluster import GUNICORN, Servers, call
from testkit.tools import require_tool
from testkit.values import SECRET


def ask_code(base_url: str, email: str) -> int:
    return call(f"{base_url}/api/auth/login", "POST", json_body={"email": email}).status


def counters_in_database(services) -> int:
    with services.session() as db:
        return db.scalar(select(func.count()).select_from(RateCounter)) or 0


def test_counters_live_in_redis(new_app, redis, member, mailbox):
    app = new_app(REDIS_URL=redis.url, RATELIMIT_CODES="2 per hour")
    client = app.test_client()
    for _ in range(2):
        assert client.post("/api/auth/login", json={"email": member.email}).status_code == 202
    refused = client.post("/api/auth/login", json={"email": member.email})
    assert refused.status_code == 429
    assert refused.get_json()["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) > 0
    # The counter lives in Redis, under the address the limit is keyed by ...
    keys = redis.command("KEYS", f"holdfast:rate:codes:address:{member.email}/3600:*")
    assert keys == "*1", keys
    # ... and none in the database.
    assert counters_in_database(app.extensions["holdfast"]) == 0
    assert mailbox.count(member.email) == 2


def test_code_limits_add_up_across_nodes(
    servers: Servers, redis, database_url, smtp_server, member, mailbox
):
    require_tool(str(GUNICORN), "the nodes run under gunicorn")
    _box, smtp_port = smtp_server
    settings = {
        "HOLDFAST_DATABASE_URL": database_url,
        "HOLDFAST_SECRET_KEY": SECRET,
        "HOLDFAST_MAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        "HOLDFAST_COOKIE_SECURE": "false",
        "HOLDFAST_REDIS_URL": redis.url,
        "HOLDFAST_RATELIMIT_CODES": "3 per hour",
        "HOLDFAST_RATELIMIT_CODES_PER_IP": "1000 per hour",
    }
    a = servers.node(settings, label="a")
    b = servers.node(settings, label="b")

    # Three codes for one address, alternating nodes: each node saw at most two.
    assert [ask_code(a.url, member.email), ask_code(b.url, member.email)] == [202, 202]
    assert ask_code(a.url, member.email) == 202
    refused = call(f"{b.url}/api/auth/login", "POST", json_body={"email": member.email})
    assert refused.status == 429, servers.logs()
    assert refused.json()["code"] == "rate_limited"
    assert ask_code(a.url, member.email) == 429
    mailbox.wait_for(member.email, 3)
    assert len(mailbox.to(member.email)) == 3  # the refused ones sent nothing

    # The limit is per address: another person asking through either node is served.
    assert ask_code(b.url, "someone.else@acme.test") == 202


def test_code_requests_still_limited_when_redis_is_down(new_app, redis, member):
    """Redis going away must not break sign-in (no 500), nor lift the limit: the counting
    moves to the database, which every process shares too."""
    app = new_app(REDIS_URL=redis.url, RATELIMIT_CODES="2 per hour")
    services = app.extensions["holdfast"]
    client = app.test_client()
    assert client.post("/api/auth/login", json={"email": member.email}).status_code == 202
    assert counters_in_database(services) == 0
    redis.stop()
    answers = [
        client.post("/api/auth/login", json={"email": member.email}).status_code for _ in range(3)
    ]
    # The one use counted in Redis is not seen by the database: two more are served.
    assert answers == [202, 202, 429]
    assert counters_in_database(services) > 0
    # A second process on the same database (another worker) sees the same count.
    other = new_app(REDIS_URL=redis.url, RATELIMIT_CODES="2 per hour").test_client()
    assert other.post("/api/auth/login", json={"email": member.email}).status_code == 429
