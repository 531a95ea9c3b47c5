"""The tenant admin's security alerts: list (filtered, keyset-paged), acknowledge,
resolve. With htmx, acknowledging or resolving swaps just that row and "Show older
alerts" appends the next page; without JavaScript the forms post and redirect back."""

from __future__ import annotations

from flask import Blueprint, Response, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l

from app.core import alert_inbox
from app.core.errors import ValidationError
from app.web.access import admin_required
from app.web.authentication import current, origin
from app.web.forms import ActionForm
from app.web.htmx import is_htmx
from app.web.i18n import said
from app.web.unit_of_work import db, now

bp = Blueprint("admin_alerts", __name__, url_prefix="/admin")

#: the words the alert pages show for a severity and a status (the stored values are English)
SEVERITY_WORDS = {"high": _l("High"), "medium": _l("Medium"), "low": _l("Low")}
STATUS_WORDS = {
    "open": _l("Open"),
    "acknowledged": _l("Acknowledged"),
    "resolved": _l("Resolved"),
}


@bp.app_context_processor
def alert_words() -> dict[str, dict[str, object]]:
    return {"severity_words": SEVERITY_WORDS, "alert_status_words": STATUS_WORDS}


@bp.get("/alerts", endpoint="alerts")
@admin_required
def alerts_page() -> str | tuple[str, int]:
    status = request.args.get("status") or "unresolved"
    severity = request.args.get("severity") or None
    cursor = request.args.get("cursor") or None
    problem = None
    try:
        page = alert_inbox.list_alerts(db(), status=status, severity=severity, cursor=cursor)
    except ValidationError as error:
        problem, status, severity = said(error), "unresolved", None
        page = alert_inbox.list_alerts(db(), status=status)
    context = {"page": page, "status": status, "severity": severity, "action": ActionForm()}
    if cursor and is_htmx() and problem is None:
        return render_template("partials/_alert_rows.html", **context)
    html = render_template(
        "admin/alerts.html",
        me=current(),
        open_count=alert_inbox.open_alert_count(db()),
        problem=problem,
        **context,
    )
    return (html, 422) if problem else html


@bp.post("/alerts/<alert_id>/acknowledge")
@admin_required
def acknowledge(alert_id: str) -> Response | str:
    row = alert_inbox.acknowledge(db(), current(), alert_id, now=now(), origin=origin())
    return _row(row)


@bp.post("/alerts/<alert_id>/resolve")
@admin_required
def resolve(alert_id: str) -> Response | str:
    row = alert_inbox.resolve(db(), current(), alert_id, now=now(), origin=origin())
    return _row(row)


def _row(row: alert_inbox.AlertRow) -> Response | str:
    if is_htmx():
        return render_template("partials/_alert_row.html", row=row, action=ActionForm())
    return redirect(url_for("admin_alerts.alerts"))  # type: ignore[return-value]
