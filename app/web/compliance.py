"""Compliance pages: a person's data download, and the admin's webhooks, reports,
retention settings and erasure.

* ``GET /account/data`` explains what the download holds; the download itself is
  ``POST /account/data`` (CSRF-checked). A POST, not a GET link, because handing out all
  of a person's data is audited (``user.data_exported``): a write, which belongs in a
  write transaction, and which another site, a link prefetcher or a mail scanner must
  not be able to trigger by loading a URL.
* ``/admin/webhooks``: register a URL for some event kinds (the signing secret is shown
  once, on the answer to the POST, never put in a URL or the flash cookie), see each
  endpoint's recent deliveries with their status, retry one, delete an endpoint.
* ``/admin/reports``: sessions or audit events for a date range as a streamed CSV
  (a POST too: the download is audited), and the tenant's retention periods.
* ``/admin/users/<id>/erase``: a confirm page (type the person's email), then the
  erasure (app.core.privacy).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_login import login_required
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import IntegerField, StringField
from wtforms.validators import Optional

from app.core import mail_queue, privacy, reports, retention, webhooks
from app.core.errors import N_, ValidationError
from app.web.access import admin_required
from app.web.authentication import current, origin
from app.web.forms import ActionForm
from app.web.i18n import said
from app.web.streaming import csv_download
from app.web.unit_of_work import db, now, services
from app.worker import allow_private

bp = Blueprint("compliance", __name__)


#: what the erasure page calls the rows it deleted (app.core.privacy.Erasure.deleted)
ERASED_WORDS = {
    "users": _l("account"),
    "sessions": _l("sessions"),
    "devices": _l("devices"),
    "challenges": _l("sign-in codes"),
    "not_me_tokens": _l("“Not me” links"),
    "webhook_deliveries": _l("queued webhook deliveries"),
}


class EndpointForm(FlaskForm):
    url = StringField("Endpoint URL")


class ReportForm(FlaskForm):
    first = StringField("From")
    last = StringField("To")
    kind = StringField()


class RetentionForm(FlaskForm):
    sessions_retention_days = IntegerField(validators=[Optional()])
    events_retention_days = IntegerField(validators=[Optional()])
    ip_anonymise_days = IntegerField(validators=[Optional()])


class EraseForm(FlaskForm):
    confirm = StringField("Type the person's email address to confirm")


# --- the person's own data ----------------------------------------------------------------


@bp.get("/account/data")
@login_required
def data() -> str:
    return render_template("compliance/data.html", form=ActionForm(), me=current())


@bp.post("/account/data")
@login_required
def download_data() -> Response:
    form = ActionForm()
    if not form.validate_on_submit():
        return redirect(url_for("compliance.data"))  # type: ignore[return-value]
    body = privacy.record_export(db(), current(), now=now(), origin=origin())
    name = f"holdfast-my-data-{now():%Y%m%d}.json"
    return Response(
        json.dumps(body, indent=2, ensure_ascii=False) + "\n",
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# --- outgoing mail ------------------------------------------------------------------------


@bp.get("/admin/mail")
@admin_required
def mail_page() -> str:
    return render_template(
        "compliance/mail.html",
        queue=mail_queue.mail_queue(db(), now=now()),
        labels=mail_queue.KIND_LABELS,
        given_up_days=mail_queue.GIVEN_UP_DAYS,
    )


# --- webhooks -----------------------------------------------------------------------------


def _webhooks_page(
    form: EndpointForm, *, error: ValidationError | None = None, secret: str | None = None
) -> str:
    shown = webhooks.endpoints(db())
    return render_template(
        "compliance/webhooks.html",
        form=form,
        action=ActionForm(),
        endpoints=shown,
        deliveries=webhooks.recent_deliveries(db(), [e.id for e in shown]),
        kinds=webhooks.KINDS,
        labels=webhooks.KIND_LABELS,
        chosen=set(request.form.getlist("kinds")) if request.method == "POST" else set(),
        error=error,
        secret=secret,
        allow_private=allow_private(current_app.config),
        max_attempts=webhooks.MAX_ATTEMPTS,
    )


@bp.get("/admin/webhooks")
@admin_required
def webhooks_page() -> str:
    return _webhooks_page(EndpointForm())


@bp.post("/admin/webhooks")
@admin_required
def add_webhook() -> tuple[str, int] | str:
    form = EndpointForm()
    if not form.validate_on_submit():
        return _webhooks_page(form, error=ValidationError(N_("This form expired. Try again."))), 400
    try:
        made = webhooks.add_endpoint(
            db(),
            services().hasher,
            current(),
            form.url.data or "",
            request.form.getlist("kinds"),
            now=now(),
            origin=origin(),
            allow_private=allow_private(current_app.config),
        )
    except ValidationError as problem:
        return _webhooks_page(form, error=problem), 422
    return render_template(
        "compliance/webhook_created.html", endpoint=made.endpoint, secret=made.secret
    )


@bp.post("/admin/webhooks/<endpoint_id>/delete")
@admin_required
def delete_webhook(endpoint_id: str) -> Response:
    if ActionForm().validate_on_submit():
        gone = webhooks.remove_endpoint(db(), current(), endpoint_id, now=now(), origin=origin())
        flash(gettext("Deleted the endpoint %(url)s.", url=gone.url))
    return redirect(url_for("compliance.webhooks_page"))  # type: ignore[return-value]


@bp.post("/admin/webhooks/deliveries/<delivery_id>/retry")
@admin_required
def retry_webhook(delivery_id: str) -> Response:
    if ActionForm().validate_on_submit():
        webhooks.retry_delivery(db(), current(), delivery_id, now=now(), origin=origin())
        flash(gettext("The delivery will be sent again on the worker's next pass."))
    return redirect(url_for("compliance.webhooks_page"))  # type: ignore[return-value]


# --- reports and retention ----------------------------------------------------------------


def _reports_page(
    form: ReportForm | None = None,
    settings_form: RetentionForm | None = None,
    *,
    error: ValidationError | None = None,
    settings_error: ValidationError | None = None,
) -> str:
    today = now().date()
    if form is None:
        form = ReportForm()
        form.first.data = (today - timedelta(days=30)).isoformat()
        form.last.data = today.isoformat()
    if settings_form is None:
        settings_form = RetentionForm(data=retention.settings(current().tenant))
    return render_template(
        "compliance/reports.html",
        form=form,
        settings_form=settings_form,
        labels=retention.LABELS,
        lowest=retention.LOWEST,
        highest=retention.HIGHEST,
        error=error,
        settings_error=settings_error,
        today=today.isoformat(),
    )


@bp.get("/admin/reports")
@admin_required
def reports_page() -> str:
    return _reports_page()


@bp.post("/admin/reports")
@admin_required
def download_report() -> Response | tuple[str, int]:
    form = ReportForm()
    if not form.validate_on_submit():
        return _reports_page(form, error=ValidationError(N_("This form expired. Try again."))), 400
    kind = form.kind.data if form.kind.data in reports.KINDS else "sessions"
    try:
        span = reports.period(form.first.data, form.last.data)
    except ValidationError as problem:
        return _reports_page(form, error=problem), 422
    admin = current()
    reports.record_download(db(), admin, kind, span, now=now(), origin=origin())
    tenant_id = admin.tenant.id

    def rows(session: Session) -> Iterator[str]:
        if kind == "sessions":
            return reports.sessions_csv(session, span)
        return reports.events_csv(session, tenant_id, span)

    return csv_download(
        rows, tenant_id=tenant_id, filename=reports.filename(kind, admin.tenant.slug, span)
    )


@bp.post("/admin/retention")
@admin_required
def update_retention() -> Response | tuple[str, int]:
    form = RetentionForm()
    if not form.validate_on_submit():
        problem = ValidationError(
            N_("Enter each period as a whole number of days.")
            if form.errors.keys() - {"csrf_token"}
            else N_("This form expired. Try again.")
        )
        return _reports_page(settings_form=form, settings_error=problem), 422
    values = {
        name: getattr(form, name).data
        for name in retention.DEFAULTS
        if getattr(form, name).data is not None
    }
    try:
        changed = retention.update_settings(
            db(),
            current().tenant,
            values,
            now=now(),
            actor_id=current().user.id,
            origin=origin(),
        )
    except ValidationError as problem:
        return _reports_page(settings_form=form, settings_error=problem), 422
    flash(
        gettext("Retention saved. The next `holdfast purge` applies it.")
        if changed
        else gettext("Nothing changed.")
    )
    return redirect(url_for("compliance.reports_page"))  # type: ignore[return-value]


# --- erasure ------------------------------------------------------------------------------


@bp.get("/admin/users/<user_id>/erase")
@admin_required
def erase_confirm(user_id: str) -> str:
    return render_template(
        "compliance/erase.html",
        preview=privacy.preview(db(), user_id),
        form=EraseForm(),
        error=None,
        me=current(),
    )


@bp.post("/admin/users/<user_id>/erase")
@admin_required
def erase(user_id: str) -> str | tuple[str, int]:
    form = EraseForm()
    preview = privacy.preview(db(), user_id)
    email = preview.user.email
    error = None
    if not form.validate_on_submit():
        error = gettext("This form expired. Reload the page and try again.")
    elif (form.confirm.data or "").strip().lower() != email:
        error = gettext("Type the person's email address exactly to confirm the erasure.")
    if error is None:
        try:
            done = privacy.erase(db(), current(), user_id, now=now(), origin=origin())
        except ValidationError as problem:
            error = said(problem)
        else:
            return render_template(
                "compliance/erased.html", email=email, erasure=done, erased_words=ERASED_WORDS
            )
    page = render_template(
        "compliance/erase.html", preview=preview, form=form, error=error, me=current()
    )
    return page, 422
