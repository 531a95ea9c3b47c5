"""Operations endpoints: /healthz (process up), /readyz (database reachable and migrated,
stored secrets open under the configured keys), /metrics (Prometheus text format;
app.web.metrics says what it holds).

Access to /metrics: a bearer token equal to HOLDFAST_METRICS_TOKEN, or, with no token
configured and no proxy trusted, callers on the loopback interface that did not come
through a proxy (see :func:`metrics`).
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from app import migrate, preflight
from app.core import stats_ops
from app.web import metrics as holdfast_metrics
from app.web.extensions import csrf, is_loopback

bp = Blueprint("ops", __name__)
csrf.exempt(bp)


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
    found: holdfast_metrics.Metrics = current_app.extensions["holdfast.metrics"]
    return Response(found.exposition(), mimetype=CONTENT_TYPE_LATEST)


def _refused(why: str) -> Response:
    return Response(why + "\n", 403, mimetype="text/plain")


def init_app(app: Flask) -> None:
    services = app.extensions["holdfast"]
    found = holdfast_metrics.Metrics(services)
    app.extensions["holdfast.metrics"] = found
    found.observe_requests(app)
