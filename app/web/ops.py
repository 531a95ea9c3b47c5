"""Operations endpoints: /healthz (process up), /readyz (database reachable and migrated,
stored secrets open under the configured keys), /metrics (Prometheus text format;
app.web.metrics says what it holds).

Access to /metrics: a bearer token equal to HOLDFAST_METRICS_TOKEN, or, with no token
configured, callers on the loopback interface only.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from app import migrate, preflight
from app.core import stats_ops
from app.extensions import csrf
from app.web import metrics as holdfast_metrics

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
    token = current_app.config.get("METRICS_TOKEN")
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), str(token).encode()):
            abort(401)
    elif request.remote_addr not in ("127.0.0.1", "::1"):
        abort(403)
    found: holdfast_metrics.Metrics = current_app.extensions["holdfast.metrics"]
    return Response(found.exposition(), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    services = app.extensions["holdfast"]
    found = holdfast_metrics.Metrics(services)
    app.extensions["holdfast.metrics"] = found
    found.observe_requests(app)
