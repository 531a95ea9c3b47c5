"""Operations endpoints: /healthz (process up), /readyz (database reachable and migrated,
stored secrets open under the configured keys), /metrics.

/metrics speaks the Prometheus text format. Business figures (sign-ins, failed codes,
live sessions, sessions ended by reason) are read from the database at scrape time, so
every node reports the same cluster-wide numbers and nothing is lost when a worker
restarts; request latency is measured per process (set PROMETHEUS_MULTIPROC_DIR under
gunicorn to add up all workers). Access: a bearer token equal to HOLDFAST_METRICS_TOKEN,
or, with no token configured, callers on the loopback interface only.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator

from flask import Blueprint, Flask, Response, abort, current_app, g, jsonify, request
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from app import migrate, preflight
from app.core import stats_ops
from app.extensions import csrf, limiter

bp = Blueprint("ops", __name__)
csrf.exempt(bp)
limiter.exempt(bp)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response | tuple[Response, int]:
    """200 when the database answers, has every migration of this release and its stored
    secrets open; 503 otherwise (a database error through the error handlers; a schema
    behind the code with code ``migrations_pending``: run ``holdfast db upgrade``; signing
    or pseudonym keys sealed with a key that is neither HOLDFAST_SECRET_KEY nor a fallback
    with code ``secrets_unavailable``, each of ``problems`` naming the cause and the fix)."""
    services = current_app.extensions["holdfast"]
    with services.session() as db:
        stats_ops.ping(db)  # a database error answers 503 through the error handlers
        stored = migrate.behind(db)
    if stored is not None:
        message = f"The database is at revision {stored}; run `holdfast db upgrade`."
        return jsonify({"error": message, "code": "migrations_pending"}), 503
    problems = preflight.secret_problems(
        services, thorough=False, hints=preflight.key_hints(current_app)
    )
    if problems:
        body = {"error": problems[0], "code": "secrets_unavailable", "problems": problems}
        return jsonify(body), 503
    return jsonify({"status": "ready"})


@bp.get("/metrics")
def metrics() -> Response:
    token = current_app.config.get("METRICS_TOKEN")
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), str(token).encode()):
            abort(401)
    elif request.remote_addr not in ("127.0.0.1", "::1"):
        abort(403)
    registry: CollectorRegistry = current_app.extensions["holdfast.metrics"]
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


class _DatabaseFigures:
    """Collected at scrape time from the database."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def describe(self) -> list[Metric]:
        return []  # nothing to query at registration time

    def collect(self) -> Iterator[Metric]:
        services = self.app.extensions["holdfast"]
        with services.session() as db:
            figures = stats_ops.figures(db, services.clock.now())
        yield GaugeMetricFamily(
            "holdfast_sessions_live", "Sessions alive now", value=figures.live_sessions
        )
        yield CounterMetricFamily(
            "holdfast_sign_ins", "Sessions started (sign-ins)", value=figures.sign_ins
        )
        yield CounterMetricFamily(
            "holdfast_failed_codes", "Wrong one-time codes entered", value=figures.failed_codes
        )
        ended = CounterMetricFamily(
            "holdfast_sessions_ended", "Sessions ended, by reason", labels=["reason"]
        )
        for reason, count in sorted(figures.ended_by_reason.items()):
            ended.add_metric([reason], count)
        yield ended


def init_app(app: Flask) -> None:
    registry = CollectorRegistry()
    latency = Histogram(
        "holdfast_request_seconds",
        "Request latency",
        ["method", "endpoint"],
        registry=registry,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    )
    registry.register(_DatabaseFigures(app))  # type: ignore[arg-type]
    app.extensions["holdfast.metrics"] = registry

    # Each (method, endpoint)'s histogram, looked up once: prometheus_client's labels()
    # takes a lock and checks its arguments on every call. Bounded by the app's routes
    # (an unknown path or a method a route does not allow has no endpoint).
    by_route: dict[tuple[str, str], Histogram] = {}

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.get("request_started")  # set for every request by app.logs
        endpoint = request.endpoint
        if started is not None and endpoint not in (None, "static", "ops.metrics"):
            route = (request.method, endpoint)
            histogram = by_route.get(route)
            if histogram is None:
                histogram = by_route[route] = latency.labels(*route)
            histogram.observe(time.perf_counter() - started)
        return response
