"""Operations endpoints: /healthz (process up), /readyz (database reachable and migrated),
/metrics.

/metrics speaks the Prometheus text format. Business figures (sign-ins, failed codes,
live sessions, sessions ended by reason) are read from the database at scrape time, so
every node reports the same cluster-wide numbers and nothing is lost when a worker
restarts; request latency is measured per process (set PROMETHEUS_MULTIPROC_DIR under
gunicorn to add up all workers). Access: a bearer token equal to HOLDFAST_METRICS_TOKEN,
or, with no token configured and no proxy trusted, callers on the loopback interface
that did not come through a proxy (see :func:`metrics`).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator

from flask import Blueprint, Flask, Response, abort, current_app, g, jsonify, request
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from app import migrate
from app.core import stats_ops
from app.extensions import csrf, is_loopback, limiter

bp = Blueprint("ops", __name__)
csrf.exempt(bp)
limiter.exempt(bp)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response | tuple[Response, int]:
    """200 when the database answers and has every migration of this release; 503
    otherwise (a database error through the error handlers; a schema behind the code
    with code ``migrations_pending``: run ``holdfast db upgrade``)."""
    services = current_app.extensions["holdfast"]
    with services.session() as db:
        stats_ops.ping(db)  # a database error answers 503 through the error handlers
        stored = migrate.behind(db)
    if stored is not None:
        message = f"The database is at revision {stored}; run `holdfast db upgrade`."
        return jsonify({"error": message, "code": "migrations_pending"}), 503
    return jsonify({"status": "ready"})


@bp.get("/metrics")
def metrics() -> Response:
    """Access: the bearer token when HOLDFAST_METRICS_TOKEN is set. Without one, only
    loopback callers that did not come through a proxy (no X-Forwarded-For), and nobody
    at all when proxies are trusted (HOLDFAST_TRUSTED_PROXIES > 0: the address is then
    the one a proxy reported, and a local proxy's callers would look local)."""
    config = current_app.config
    token = config.get("METRICS_TOKEN")
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), str(token).encode()):
            abort(401)
    elif int(config.get("TRUSTED_PROXIES") or 0):
        return _refused(
            "/metrics needs HOLDFAST_METRICS_TOKEN when HOLDFAST_TRUSTED_PROXIES is set: "
            "behind proxies, no caller's address can show it is local."
        )
    elif not is_loopback(request.remote_addr or "") or "X-Forwarded-For" in request.headers:
        return _refused(
            "/metrics without HOLDFAST_METRICS_TOKEN answers only loopback callers that "
            "do not come through a proxy."
        )
    registry: CollectorRegistry = current_app.extensions["holdfast.metrics"]
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def _refused(why: str) -> Response:
    return Response(why + "\n", 403, mimetype="text/plain")


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
