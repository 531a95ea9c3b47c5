"""Tenant admin: the live dashboard and the sessions explorer.

* ``GET /admin``: the dashboard. Its figures re-render every 10 s from
  ``GET /admin/figures`` (an htmx partial); each chart reads its own JSON endpoint
  (``GET /admin/charts/<name>.json``), so no data sits in inline script (the CSP forbids
  it). Every figure and chart bar links to the explorer (or the audit log) filtered to it.
* ``GET /admin/sessions``: every session of the tenant with filters in the query string
  (shareable), keyset pagination (the next-page link carries the cursor), and ending one
  or the selected sessions with htmx: the rows are replaced in place.

Every view is behind :func:`app.web.access.admin_required`; the database session is
scoped to the admin's tenant, so another tenant's ids answer 404.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext, ngettext
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from htmx_flask import make_response as htmx_response
from werkzeug.datastructures import MultiDict
from werkzeug.routing import BuildError

from app.cache import remembered
from app.core import admin, stats, tenancy
from app.core.access import FreshSignInRequired, require_admin
from app.core.errors import N_, Forbidden, ValidationError
from app.user_agents import DEVICE_KINDS
from app.web.access import admin_required
from app.web.auth import safe_next
from app.web.authentication import current, origin
from app.web.forms import ActionForm
from app.web.htmx import is_htmx
from app.web.i18n import said
from app.web.unit_of_work import db, now, services

bp = Blueprint("admin", __name__, url_prefix="/admin")

#: the explorer's query-string parameters, in the order links write them
EXPLORER_PARAMS = ("status", "user", "q", "kind", "os", "browser", "ip", "from", "to", "sort")
#: the admin pages' own sub-navigation: (endpoint, label, endpoints that are "this page");
#: pages of other issues that are not installed are left out
ADMIN_NAV = (
    ("admin.dashboard", _l("Dashboard"), ("admin.dashboard",)),
    ("admin.sessions", _l("Sessions"), ("admin.sessions",)),
    ("admin_people.users", _l("People"), ("admin_people.users", "admin_people.user")),
    ("admin_people.audit", _l("Audit log"), ("admin_people.audit", "admin_people.event")),
    ("admin_alerts.alerts", _l("Alerts"), ("admin_alerts.alerts",)),
    ("admin_policy.policy", _l("Policy"), ("admin_policy.policy",)),
    ("compliance.webhooks_page", _l("Webhooks"), ("compliance.webhooks_page",)),
    ("admin_apps.apps", _l("Apps"), ("admin_apps.apps",)),
    ("compliance.mail_page", _l("Mail"), ("compliance.mail_page",)),
    ("compliance.reports_page", _l("Reports"), ("compliance.reports_page",)),
)
END_REASON_LABELS = {
    "logout": _l("Signed out"),
    "revoked_by_user": _l("Ended by the person"),
    "revoked_by_admin": _l("Ended by an admin"),
    "limit_evicted": _l("Evicted at the limit"),
    "idle_expired": _l("Idle timeout"),
    "lifetime_expired": _l("Reached its lifetime"),
    "suspicious": _l("Ended as suspicious"),
    "keys_rotated": _l("Keys rotated"),
    "user_erased": _l("Account erased"),
}
CHARTS = {
    "sign-ins-per-day": _l("Sign-ins per day"),
    "live-by-kind": _l("Live sessions by device kind"),
    "live-by-os": _l("Live sessions by OS"),
    "live-by-browser": _l("Live sessions by browser"),
    "session-lengths": _l("Session length"),
    "sign-ins-by-hour": _l("Sign-ins by hour of day (UTC)"),
}


# --- shared by the admin blueprints -------------------------------------------------------


@bp.app_template_global()
def admin_url(endpoint: str, **values: Any) -> str | None:
    """``url_for`` for a page that may not be installed (another issue's page): None
    when the endpoint does not exist, so the nav just leaves it out."""
    if endpoint not in current_app.view_functions:
        return None
    try:
        return url_for(endpoint, **values)
    except BuildError:
        return None


@bp.app_template_global()
def admin_nav() -> list[tuple[str, str, bool]]:
    """(url, label in the page's language, is this page) for each admin page that exists."""
    links = []
    for endpoint, label, section in ADMIN_NAV:
        url = admin_url(endpoint)
        if url is not None:
            links.append((url, str(label), request.endpoint in section))
    return links


@bp.app_template_global()
def kind_label(kind: str) -> str:
    """A device kind's English label (``_(kind_label(kind))`` says it in the page's language)."""
    return stats.KIND_LABELS.get(kind, kind.capitalize())


@bp.app_template_global()
def end_reason_label(reason: str | None) -> str:
    """How the admin pages name why a session ended."""
    label = END_REASON_LABELS.get(reason or "")
    return str(label) if label is not None else (reason or "ended").replace("_", " ").capitalize()


def ask_again_for_htmx() -> Response | None:
    """An htmx request (the figures poll, a row's button) cannot follow a redirect to
    /login/again: it would swap that whole page into a corner of this one. Tell htmx to
    load the confirm page instead, coming back to the page the request came from."""
    if not is_htmx() or not current_user.is_authenticated:
        return None
    try:
        require_admin(current(), now())
    except FreshSignInRequired:
        came_from = urlsplit(request.headers.get("HX-Current-URL", ""))
        back = safe_next(came_from.path + (f"?{came_from.query}" if came_from.query else ""))
        return htmx_response(redirect=url_for("auth.again", next=back))  # type: ignore[no-any-return]
    except Forbidden:
        return None  # admin_required answers 403
    return None


bp.before_request(ask_again_for_htmx)


def parse_day(value: str | None, field: str) -> date | None:
    """A YYYY-MM-DD query parameter, or ValidationError naming it."""
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as error:
        raise ValidationError(N_("Dates are written YYYY-MM-DD."), field=field) from error


def day_start(day: date | None, *, plus: int = 0) -> datetime | None:
    if day is None:
        return None
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=plus)


def explorer_url(**filters: Any) -> str:
    """The explorer filtered by ``filters`` (query parameter names; None drops one)."""
    return url_for("admin.sessions", **{k: v for k, v in filters.items() if v is not None})


# --- dashboard ----------------------------------------------------------------------------


@bp.get("")
@admin_required
def dashboard() -> str:
    return render_template(
        "admin/dashboard.html",
        tenant=current().tenant,
        figures=stats.figures(db(), now=now()),
        charts=CHARTS,
        recount_minutes=CHART_CACHE_SECONDS // 60,
        links=_figure_links(now()),
    )


@bp.get("/figures")
@admin_required
def figures() -> str:
    """The figures alone: the dashboard polls this every 10 s."""
    return render_template(
        "partials/admin/_figures.html",
        figures=stats.figures(db(), now=now()),
        links=_figure_links(now()),
    )


def _figure_links(moment: datetime) -> dict[str, str | None]:
    today: dict[str, Any] = {"from": stats.start_of_day(moment).date().isoformat()}
    return {
        "live_sessions": explorer_url(status="live"),
        "people_signed_in": explorer_url(status="live"),
        "sign_ins_today": explorer_url(status="all", sort="signed_in", **today),
        # Wrong codes are events, not sessions: the audit log is their explorer.
        "failed_codes_today": url_for("admin_people.audit", kind="code.failed", **today),
        "open_alerts": admin_url("admin_alerts.alerts", status="open"),
    }


@bp.get("/charts/<name>.json")
@admin_required
def chart(name: str) -> Response:
    """One chart's data: ``{title, labels, values, links, total}``; ``links[i]`` opens the
    explorer filtered to bar or slice ``i`` (null where no filter matches it)."""
    if name not in CHARTS:
        abort(404)
    return jsonify(_chart(name, now()))


#: the 30-day charts, cached for a few minutes: at a million stored sessions each costs
#: 0.1 to 0.3 s to count (docs/benchmarks.md), and a month's trend moves little in five
#: minutes. The live breakdowns are counted on every request, like the figures.
CACHED_CHARTS = {"sign-ins-per-day", "sign-ins-by-hour", "session-lengths"}
CHART_CACHE_SECONDS = 300


def _chart(name: str, moment: datetime) -> dict[str, Any]:
    """The chart's data in the page's language. The counting (cached for every admin of
    the tenant, whatever their language) is English; its words are translated here."""
    data = _counted(name, moment) if name not in CACHED_CHARTS else None
    if data is None:
        # A month of sessions to count: one answer per tenant, chart and day serves every
        # admin of the tenant on every node for CHART_CACHE_SECONDS (app.cache).
        key = f"chart:{current().facts.tenant.id}:{name}:{stats.start_of_day(moment).date()}"
        data = remembered(
            services().cache, key, CHART_CACHE_SECONDS, lambda: _counted(name, moment)
        )
    # Labels are the core's words ("Other", "under 5 min", "Phone") or values the catalog
    # does not hold (OS and browser names, days, hours), which gettext leaves as they are.
    return {**data, "title": str(CHARTS[name]), "labels": [gettext(x) for x in data["labels"]]}


def _counted(name: str, moment: datetime) -> dict[str, Any]:
    series, link = _chart_series(name, moment)
    return {
        "labels": series.labels,
        "values": series.values,
        "links": [link(key) if key is not None else None for key in series.keys],
        "total": series.total,
    }


def _chart_series(name: str, moment: datetime) -> tuple[stats.Series, Any]:
    def no_link(_key: str) -> None:
        return None

    if name == "sign-ins-per-day":
        series = stats.sign_ins_per_day(db(), now=moment)

        def on_day(key: str) -> str:
            return explorer_url(status="all", sort="signed_in", **{"from": key, "to": key})

        return series, on_day
    if name.startswith("live-by-"):
        breakdown = name.removeprefix("live-by-")
        series = stats.live_by(db(), breakdown, now=moment)
        return series, lambda key: explorer_url(status="live", **{breakdown: key})
    if name == "session-lengths":
        return stats.session_lengths(db(), now=moment), no_link
    return stats.sign_ins_by_hour(db(), now=moment), no_link


# --- sessions explorer ----------------------------------------------------------------------


def filters_from(args: MultiDict[str, str]) -> admin.SessionFilters:
    """The explorer's filters from its query string; ValidationError names a bad one."""

    def text(name: str) -> str | None:
        value = (args.get(name) or "").strip()
        return value or None

    return admin.SessionFilters(
        status=text("status") or "live",
        user_id=text("user"),
        q=text("q"),
        kind=text("kind"),
        os=text("os"),
        browser=text("browser"),
        ip_prefix=text("ip"),
        signed_in_from=day_start(parse_day(text("from"), "from")),
        signed_in_to=day_start(parse_day(text("to"), "to"), plus=1),
        sort=text("sort") or "last_active",
    ).validate()


def _row_views(rows: list[admin.SessionRow]) -> list[tuple[admin.SessionRow, admin.SessionState]]:
    tenant, moment = current().tenant, now()
    return [(row, admin.session_state(row.session, tenant, row.device, moment)) for row in rows]


@bp.get("/sessions")
@admin_required
def sessions() -> Response | str:
    """The explorer. A bad filter shows the page with the message (422), never a 500."""
    args = request.args
    shown = {name: args.get(name, "") for name in EXPLORER_PARAMS}
    error = None
    person = None
    page = admin.Page()
    try:
        filters = filters_from(args)
        if filters.user_id:
            person = tenancy.tenant_user(db(), filters.user_id)
        page = admin.search_sessions(db(), filters, now=now(), cursor=args.get("cursor") or None)
    except ValidationError as problem:
        error = problem
    next_url = None
    if page.next_cursor:
        next_url = explorer_url(**{k: v or None for k, v in shown.items()}, cursor=page.next_cursor)
    body = render_template(
        "admin/sessions.html",
        rows=_row_views(page.rows),
        shown=shown,
        person=person,
        error=error,
        next_url=next_url,
        first_url=explorer_url(**{k: v or None for k, v in shown.items()}),
        without_person_url=explorer_url(**{k: v or None for k, v in shown.items() if k != "user"}),
        paged=bool(args.get("cursor")),
        kinds=DEVICE_KINDS,
        statuses=admin.STATUSES,
        action=ActionForm(),
        back=request.full_path.rstrip("?"),
    )
    return Response(body, status=422 if error else 200)


def _back_to_explorer() -> Response:
    """Back to the admin page the form was on (the explorer with its filters, or a
    person's page); never anywhere outside /admin."""
    back = safe_next(request.form.get("back"))
    if not back or not back.startswith(url_for("admin.dashboard") + "/"):
        back = url_for("admin.sessions")
    return redirect(back)  # type: ignore[return-value]


def _signed_out_self(ended: list[Any]) -> Response | None:
    """The admin ended their own current session: off to the sign-in page."""
    if not any(s.id == current().session.id for s in ended):
        return None
    target = url_for("auth.login", reason="revoked_by_admin")
    if is_htmx():
        return htmx_response(redirect=target)  # type: ignore[no-any-return]
    return redirect(target)  # type: ignore[return-value]


@bp.post("/sessions/<session_id>/end")
@admin_required
def end_session(session_id: str) -> Response | str:
    """End one session. htmx gets the row as it is now, to swap in place."""
    ended = admin.end_session_as_admin(db(), current(), session_id, now=now(), origin=origin())
    leave = _signed_out_self([ended])
    if leave is not None:
        return leave
    if is_htmx():
        rows = admin.session_rows(db(), [ended.id])
        return render_template(
            "partials/admin/_session_row.html",
            item=_row_views(rows)[0],
            action=ActionForm(),
        )
    flash(gettext("Session ended."))
    return _back_to_explorer()


@bp.post("/sessions/end")
@admin_required
def end_selected() -> Response | str:
    """End the selected sessions (all or nothing: an id not of this tenant is a 404).
    htmx gets a notice plus every affected row, swapped in place out of band."""
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        ended = admin.end_sessions_as_admin(
            db(), current(), request.form.getlist("session"), now=now(), origin=origin()
        )
    except ValidationError as problem:
        if is_htmx():
            return Response(
                render_template("partials/admin/_notice.html", message=said(problem), warning=True),
                status=422,
            )
        flash(said(problem))
        return _back_to_explorer()
    leave = _signed_out_self(ended)
    if leave is not None:
        return leave
    message = ngettext("Ended %(num)s session.", "Ended %(num)s sessions.", len(ended))
    if is_htmx():
        rows = admin.session_rows(db(), [s.id for s in ended])
        return render_template(
            "partials/admin/_ended.html",
            message=message,
            items=_row_views(rows),
            action=ActionForm(),
        )
    flash(message)
    return _back_to_explorer()
