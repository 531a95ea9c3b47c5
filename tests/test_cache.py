"""app.cache: the admin dashboard's 30-day charts counted once per tenant, chart and day for
a few minutes, in the process's memory or, with HOLDFAST_REDIS_URL, in a real
redis-server shared by every node; the live breakdowns never cached; Redis going away
costs a recount, never an error."""

from __future__ import annotations

from datetime import timedelta

import pytest
from redis import Redis as RedisClient

from app.cache import MemoryCache, RedisCache, cache_from_url
from testkit.rows import add_session
from testkit.sql import statements_run
from testkit.values import START
from testkit.web import sign_in

PER_DAY = "/admin/charts/sign-ins-per-day.json"


def counts_sessions(statements: list[str]) -> bool:
    return any("count" in sql.lower() and "sessions" in sql.lower() for sql in statements)


def test_memory_cache_is_bounded_expires_and_hands_out_copies():
    cache = MemoryCache(max_entries=2)
    cache.set("a", {"n": [1]}, seconds=60)
    cache.set("b", 2, seconds=60)
    cache.set("c", 3, seconds=60)
    assert len(cache) == 2
    assert cache.get("a") is None  # the oldest went first
    assert (cache.get("b"), cache.get("c")) == (2, 3)
    cache.set("gone", 4, seconds=0)
    assert cache.get("gone") is None
    cache.set("a", {"n": [1]}, seconds=60)
    cache.get("a")["n"].append(2)  # type: ignore[index]
    assert cache.get("a") == {"n": [1]}


def test_month_charts_are_counted_once_per_tenant_and_day(
    app, mailbox, make, tenant, member, services, clock
):
    boss = make.user("boss@acme.test", tenant, role="admin")
    admin = sign_in(app, mailbox, boss.email)
    assert "counted every 5 minutes" in admin.get("/admin").text  # said on the page
    first = admin.get(PER_DAY).json
    assert first["values"][-1] == 1  # the admin's own sign-in

    # A sign-in now is not in the month chart until the cached answer runs out ...
    add_session(services, tenant, member, created=START - timedelta(minutes=1))
    with statements_run(services.database) as statements:
        again = admin.get(PER_DAY).json
    assert again == first
    assert not counts_sessions(statements)
    # ... while the live breakdown, asked each time, sees it at once.
    kinds = admin.get("/admin/charts/live-by-kind.json").json
    assert sum(kinds["values"]) == 2

    # The cached answer is still only for admins, freshly signed in.
    member_client = sign_in(app, mailbox, member.email)
    assert member_client.get(PER_DAY).status_code == 403
    clock.advance(minutes=16)
    stale = admin.get(PER_DAY, headers={"Accept": "application/json"})
    assert stale.status_code == 401 and stale.json["code"] == "fresh_login_required"

    # Another tenant's admin gets that tenant's own chart, not this one's.
    other = make.tenant("globex")
    other_boss = make.user("boss@globex.test", other, role="admin")
    for _ in range(2):
        add_session(services, other, other_boss, created=START - timedelta(minutes=2))
    theirs = sign_in(app, mailbox, other_boss.email).get(PER_DAY).json
    assert theirs["values"][-1] == 3

    # The next day is a new count (the chart's window has moved).
    clock.advance(days=1)
    tomorrow = sign_in(app, mailbox, boss.email).get(PER_DAY).json
    assert tomorrow["values"][-2] == 3  # yesterday: the admin once, the member twice


def test_month_charts_are_shared_by_nodes_through_redis(
    new_app, redis, mailbox, make, tenant, member, services
):
    boss = make.user("boss@acme.test", tenant, role="admin")
    node_a, node_b = new_app(REDIS_URL=redis.url), new_app(REDIS_URL=redis.url)
    on_a = sign_in(node_a, mailbox, boss.email).get(PER_DAY)
    assert on_a.status_code == 200
    store = RedisClient.from_url(redis.url)
    key = f"holdfast:cache:chart:{tenant.id}:sign-ins-per-day:{START.date().isoformat()}"
    assert store.keys("holdfast:cache:*") == [key.encode()]  # this tenant, chart and day
    assert 0 < store.ttl(key) <= 300

    # Node B answers the same admin from Redis without counting anything.
    admin_on_b = sign_in(node_b, mailbox, boss.email)
    add_session(services, tenant, member, created=START - timedelta(minutes=1))
    b_services = node_b.extensions["holdfast"]
    with statements_run(b_services.database) as statements:
        on_b = admin_on_b.get(PER_DAY)
    assert on_b.json == on_a.json
    assert not counts_sessions(statements)

    # Redis gone: the chart is counted again, not refused.
    redis.stop()
    with statements_run(b_services.database) as statements:
        counted = admin_on_b.get("/admin/charts/sign-ins-by-hour.json")
    assert counted.status_code == 200
    assert counts_sessions(statements)
    assert sum(counted.json["values"]) == 3  # the admin on each node, and the member


def test_redis_failures_pause_the_shared_cache_and_odd_values_are_misses(redis):
    cache = RedisCache(redis.url)
    RedisClient.from_url(redis.url).set("holdfast:cache:odd", b"\xff not json")
    assert cache.get("odd") is None
    cache.set("chart", {"values": [1]}, seconds=60)
    assert cache.get("chart") == {"values": [1]}
    redis.stop()
    assert cache.get("chart") is None  # the failure: computed instead ...
    calls = []
    cache._redis.get = lambda *args: calls.append(args)  # type: ignore[method-assign]
    cache._redis.set = lambda *args, **kw: calls.append(args)  # type: ignore[method-assign]
    assert cache.get("chart") is None
    cache.set("chart", {"values": [2]}, seconds=60)
    assert calls == []  # ... and Redis is left alone for a while


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        (None, MemoryCache),
        ("redis://127.0.0.1:6379/0", RedisCache),
        ("rediss://cache.internal:6380/0", RedisCache),
        ("unix:///run/redis.sock", RedisCache),
        # The rate limiter takes these; redis-py's from_url does not: the app must start.
        ("redis+sentinel://127.0.0.1:26379/mymaster", MemoryCache),
        ("redis+unix:///run/redis.sock", MemoryCache),
    ],
)
def test_cache_from_url(url, kind):
    assert type(cache_from_url(url)) is kind


@pytest.fixture(autouse=True)
def _quiet_cache_warnings(caplog):
    caplog.set_level("ERROR", logger="app.cache")
