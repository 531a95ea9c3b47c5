"""Tenant admin: people and the audit log.

* ``/admin/users``: the tenant's people with search and keyset pages, and a form to add
  someone (they get an email inviting them to sign in).
* ``/admin/users/<id>``: a person's devices, live sessions and 30 days of signed-out
  history, with "End all sessions", "Stop trusting all devices", make admin / member,
  disable / enable. Each is a plain form that posts and redirects back (so it works
  without JavaScript); htmx boosts them and asks for confirmation first.
* ``/admin/audit``: every event of the tenant, newest first, filtered by kind, actor,
  subject and dates, keyset pages; ``/admin/audit.csv`` streams the same filtered view as
  CSV, a batch of rows at a time; ``/admin/audit/<id>`` shows one event in full.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext, ngettext, pgettext
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict
from wtforms import EmailField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, Length

from app.core import admin, audit_log, people, tenancy
from app.core.errors import N_, ValidationError
from app.core.sessions import END_MESSAGES
from app.models import User
from app.web.access import admin_required
from app.web.admin import ask_again_for_htmx, day_start, parse_day
from app.web.audit_words import in_words
from app.web.authentication import current, origin
from app.web.forms import ActionForm
from app.web.i18n import said
from app.web.streaming import csv_download
from app.web.unit_of_work import db, now

bp = Blueprint("admin_people", __name__, url_prefix="/admin")
bp.before_request(ask_again_for_htmx)

AUDIT_PARAMS = ("kind", "actor", "subject", "from", "to")
#: event kinds offered in the audit log's kind filter ("session." means every session.* kind)
KNOWN_KINDS = (
    "session.",
    "session.created",
    "session.ended",
    "session.reauthenticated",
    "code.",
    "code.requested",
    "code.failed",
    "user.",
    "user.created",
    "user.role_changed",
    "user.disabled",
    "user.enabled",
    "user.sessions_ended",
    "device.",
    "device.trusted",
    "device.renamed",
    "devices.untrusted",
    "policy.changed",
    "keys.rotated",
    "tenant.created",
)
CSV_COLUMNS = (
    "id",
    "at",
    "kind",
    "actor_id",
    "actor_email",
    "subject_id",
    "subject_email",
    "session_id",
    "ip",
    "details",
)


#: the pages name the roles with role_label() (in the page's language)
ROLE_CHOICES = [SelectChoice("member", "Member"), SelectChoice("admin", "Admin")]


@bp.app_template_global()
def role_label(role: str) -> str:
    """A role's name in the page's language ("Admin" is a role here, not the admin area
    the navigation's "Admin" opens, hence its own catalog context)."""
    return pgettext("role", "Admin") if role == "admin" else gettext("Member")


class AddPersonForm(FlaskForm):
    email = EmailField(
        _l("Email"),
        validators=[DataRequired(_l("Enter their email address.")), Length(max=320)],
    )
    name = StringField(_l("Name (optional)"), validators=[Length(max=200)])
    role = SelectField(_l("Role"), choices=ROLE_CHOICES)


class RoleForm(FlaskForm):
    role = SelectField(_l("Role"), choices=ROLE_CHOICES)


# --- people ---------------------------------------------------------------------------------


def _people_page(form: AddPersonForm, status: int = 200) -> Response:
    q = (request.args.get("q") or "").strip()
    error = None
    page = people.PeoplePage()
    try:
        page = people.search_people(
            db(), q=q or None, cursor=request.args.get("cursor") or None, now=now()
        )
    except ValidationError as problem:
        error, status = problem, 422
    next_url = url_for("admin_people.users", q=q or None, cursor=page.next_cursor)
    body = render_template(
        "admin/users.html",
        page=page,
        q=q,
        form=form,
        error=error,
        next_url=next_url if page.next_cursor else None,
        paged=bool(request.args.get("cursor")),
    )
    return Response(body, status=status)


@bp.get("/users")
@admin_required
def users() -> Response:
    return _people_page(AddPersonForm(role="member"))


@bp.post("/users")
@admin_required
def add_user() -> Response:
    """Add a person; they are emailed an invitation to sign in."""
    form = AddPersonForm()
    if form.validate_on_submit():
        try:
            user = people.add_person(
                db(),
                current(),
                form.email.data or "",
                name=form.name.data,
                role=form.role.data or "member",
                now=now(),
                origin=origin(),
                sign_in_url=current_app.config["BASE_URL"] + url_for("auth.login"),
                product=current_app.config["PRODUCT_NAME"],
            )
        except ValidationError as problem:
            field = getattr(form, problem.field or "email", form.email)
            field.errors = [*field.errors, said(problem)]
        else:
            flash(
                gettext(
                    "Added %(email)s. We emailed them an invitation to sign in.", email=user.email
                )
            )
            return redirect(url_for("admin_people.user", user_id=user.id))  # type: ignore[return-value]
    return _people_page(form, status=422)


@bp.get("/users/<user_id>")
@admin_required
def user(user_id: str) -> str:
    view = people.person_view(db(), user_id, now=now())
    return render_template(
        "admin/user.html",
        view=view,
        me=current(),
        action=ActionForm(),
        role_form=RoleForm(role=view.user.role),
        end_messages=END_MESSAGES,
        history_days=people.HISTORY_DAYS,
    )


def _person_action(user_id: str, act: Any, done: Any) -> Response:
    """Run one change on a person and go back to their page with what happened (or the
    reason it was refused) as the notice. NotFound propagates: a 404 page."""
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        result = act()
    except ValidationError as problem:
        flash(said(problem))
        return redirect(url_for("admin_people.user", user_id=user_id))  # type: ignore[return-value]
    flash(done(result))
    return redirect(url_for("admin_people.user", user_id=user_id))  # type: ignore[return-value]


@bp.post("/users/<user_id>/role")
@admin_required
def set_role(user_id: str) -> Response:
    role = request.form.get("role", "")

    def act() -> Any:
        return people.set_role(db(), current(), user_id, role, now=now(), origin=origin())

    def done(u: User) -> str:
        if u.role == "admin":
            return gettext("%(email)s is now an admin.", email=u.email)
        return gettext("%(email)s is now a member.", email=u.email)

    return _person_action(user_id, act, done)


@bp.post("/users/<user_id>/disable")
@admin_required
def disable(user_id: str) -> Response:
    def act() -> Any:
        return people.disable(db(), current(), user_id, now=now(), origin=origin())

    return _person_action(
        user_id,
        act,
        lambda ended: ngettext(
            "Disabled. %(num)s session ended; they cannot sign in.",
            "Disabled. %(num)s sessions ended; they cannot sign in.",
            len(ended),
        ),
    )


@bp.post("/users/<user_id>/enable")
@admin_required
def enable(user_id: str) -> Response:
    def act() -> Any:
        return people.enable(db(), current(), user_id, now=now(), origin=origin())

    return _person_action(
        user_id, act, lambda u: gettext("Enabled. %(email)s can sign in again.", email=u.email)
    )


@bp.post("/users/<user_id>/end-sessions")
@admin_required
def end_sessions(user_id: str) -> Response:
    def act() -> Any:
        return admin.end_user_sessions(db(), current(), user_id, now=now(), origin=origin())

    response = _person_action(
        user_id,
        act,
        lambda ended: ngettext("Ended %(num)s session.", "Ended %(num)s sessions.", len(ended)),
    )
    if user_id == current().user.id:  # they signed themselves out everywhere
        return redirect(url_for("auth.login", reason="revoked_by_admin"))  # type: ignore[return-value]
    return response


@bp.post("/users/<user_id>/untrust-devices")
@admin_required
def untrust_devices(user_id: str) -> Response:
    def act() -> Any:
        return people.untrust_devices(db(), current(), user_id, now=now(), origin=origin())

    return _person_action(
        user_id,
        act,
        lambda count: ngettext(
            "Stopped trusting %(num)s device. Nobody was signed out.",
            "Stopped trusting %(num)s devices. Nobody was signed out.",
            count,
        ),
    )


# --- audit log ----------------------------------------------------------------------------


def audit_filters(args: MultiDict[str, str]) -> audit_log.EventFilters:
    """The audit log's filters from its query string. Actor and subject take an email of
    the tenant or a person's id. ValidationError names a bad one."""

    def text(name: str) -> str | None:
        value = (args.get(name) or "").strip()
        return value or None

    return audit_log.EventFilters(
        kind=text("kind"),
        actor_id=_person_id(text("actor"), "actor"),
        subject_id=_person_id(text("subject"), "subject"),
        at_from=day_start(parse_day(text("from"), "from")),
        at_to=day_start(parse_day(text("to"), "to"), plus=1),
    ).validate()


def _person_id(value: str | None, field: str) -> str | None:
    if value is None or "@" not in value:
        return value
    found = people.find_person(db(), value)
    if found is None:
        raise ValidationError(
            N_("Nobody in this tenant has the email %(email)s."),
            words={"email": value},
            field=field,
        )
    return found.id


@bp.get("/audit")
@admin_required
def audit() -> Response:
    args = request.args
    shown = {name: args.get(name, "") for name in AUDIT_PARAMS}
    error = None
    page = audit_log.EventPage()
    try:
        page = audit_log.search_events(db(), audit_filters(args), cursor=args.get("cursor") or None)
    except ValidationError as problem:
        error = problem
    kept: dict[str, Any] = {k: v for k, v in shown.items() if v}
    names = audit_log.names_for(db(), page.rows)
    body = render_template(
        "admin/audit.html",
        page=page,
        shown=shown,
        error=error,
        said={e.id: in_words(e, names, person_link) for e in page.rows},
        details={
            e.id: json.dumps(e.details, indent=2, sort_keys=True, default=str) for e in page.rows
        },
        kinds=KNOWN_KINDS,
        next_url=url_for("admin_people.audit", **kept, cursor=page.next_cursor)
        if page.next_cursor
        else None,
        first_url=url_for("admin_people.audit", **kept),
        csv_url=url_for("admin_people.audit_csv", **kept),
        paged=bool(args.get("cursor")),
    )
    return Response(body, status=422 if error else 200)


@bp.get("/audit.csv")
@admin_required
def audit_csv() -> Response:
    """The filtered audit log as CSV, streamed: rows are read and written a batch at a
    time, so the export of a million events never sits in memory."""
    filters = audit_filters(request.args)  # a bad filter: the 422 page, before any row
    stamp = now().strftime("%Y%m%d-%H%M")
    tenant = current().tenant

    def rows(session: Session) -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for batch in audit_log.iter_event_batches(session, filters):
            who = tenancy.people_by_id(
                session, {e.actor_id for e in batch} | {e.subject_id for e in batch}
            )
            for event in batch:
                writer.writerow(
                    _csv_safe(value)
                    for value in (
                        event.id,
                        event.at.isoformat().replace("+00:00", "Z"),
                        event.kind,
                        event.actor_id or "",
                        who[event.actor_id].email if event.actor_id in who else "",
                        event.subject_id or "",
                        who[event.subject_id].email if event.subject_id in who else "",
                        event.session_id or "",
                        event.ip,
                        json.dumps(event.details, sort_keys=True, default=str),
                    )
                )
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        if buffer.getvalue():
            yield buffer.getvalue()

    return csv_download(rows, tenant_id=tenant.id, filename=f"audit-{tenant.slug}-{stamp}.csv")


def person_link(user: User, shown: str) -> Markup:
    """A person named in an event, linked to their page."""
    return Markup('<a href="%s">%s</a>') % (url_for("admin_people.user", user_id=user.id), shown)


def _csv_safe(value: Any) -> Any:
    """Cells a spreadsheet would run as a formula are prefixed with a quote (OWASP CSV
    injection); emails and device names are chosen by people, so they can start with '='."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@bp.get("/audit/<int:event_id>")
@admin_required
def event(event_id: int) -> str:
    found = audit_log.tenant_event(db(), event_id)
    return render_template(
        "admin/event.html",
        event=found,
        said=in_words(found, audit_log.names_for(db(), [found]), person_link),
        who=tenancy.people_by_id(db(), {found.actor_id, found.subject_id}),
        details=json.dumps(found.details, indent=2, sort_keys=True, default=str),
    )
