"""The person's account security: their authenticator app (add, confirm, remove) and
recovery codes, their recent security alerts, and the "This wasn't me" link from a
new-device email.

* Adding an app turns two-step sign-in on (app.core.mfa): it shows its secret and QR code
  once, on the answer to a POST (never in a URL, never again on reload); a code from the
  app then confirms it, and the answer shows the ten recovery codes, once. New recovery
  codes (the old ones then stop working) are shown the same way.
* Adding, removing and new recovery codes need a sign-in from the last 15 minutes (else:
  /login/again and back); adding and removing offer "Also sign out my other sessions".
* "This wasn't me": GET only shows what the link is about and a button (mail scanners
  open links); the POST acts. It needs no sign-in: the link is the proof.
* The person's own recent activity (their events of the last 30 days, in the audit log's
  words, app.web.audit_words, at most 50) and the sessions that ended in that time, with
  why: what Google's "Recent security activity" and Keycloak's account console show, so
  a person need not ask an admin what happened on their account.
"""

from __future__ import annotations

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
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext, refresh
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, StringField
from wtforms.validators import DataRequired, Length

from app.core import accounts, alert_inbox, audit_log, mfa, people, totp
from app.core.access import FreshSignInRequired, is_fresh
from app.core.errors import InvalidCode, NotFound, ValidationError
from app.core.not_me import disown_sign_in, find_not_me
from app.core.sessions import END_MESSAGES
from app.web.audit_words import in_words
from app.web.auth import safe_next
from app.web.authentication import current, origin
from app.web.cookies import clear_session_cookie
from app.web.forms import ActionForm
from app.web.i18n import said
from app.web.templating import enrolment_page
from app.web.unit_of_work import db, now, services

bp = Blueprint("security", __name__)


class StartForm(FlaskForm):
    next = HiddenField()


class ConfirmForm(FlaskForm):
    code = StringField(
        "Code from your app",
        validators=[DataRequired(_l("Enter the 6-digit code your app shows.")), Length(max=20)],
    )
    sign_out_others = BooleanField("Also sign out my other sessions")
    next = HiddenField()


class RemoveForm(FlaskForm):
    sign_out_others = BooleanField("Also sign out my other sessions")


def _next() -> str | None:
    return safe_next(request.values.get("next"))


def _again() -> Response:
    """Back here after a fresh code."""
    return redirect(url_for("auth.again", next=url_for("security.index", next=_next())))  # type: ignore[return-value]


class LanguageForm(FlaskForm):
    """A person's language: one Holdfast speaks, or "" for the browser's choice (the
    core refuses any other)."""

    language = StringField(validators=[Length(max=16)])


@bp.post("/account/language")
@login_required
def language() -> Response:
    """Keep the person's language (pages and mails); back to the security page."""
    form = LanguageForm()
    if form.validate_on_submit():
        try:
            accounts.set_language(
                db(), current().user, form.language.data or "", now=now(), origin=origin()
            )
        except ValidationError as problem:
            flash(said(problem))
        else:
            refresh()  # the words below in the language just chosen
            flash(_("Language saved."))
    else:
        flash("; ".join(form.language.errors) or _("Choose a language."))
    return redirect(url_for("security.index"))  # type: ignore[return-value]


@bp.get("/account/security")
@login_required
def index() -> str:
    me = current()
    mine = alert_inbox.list_alerts(db(), status="all", user_id=me.user.id, limit=10)
    enabled = totp.is_enabled(me.user)
    since = now() - timedelta(days=people.HISTORY_DAYS)
    activity = audit_log.own_events(db(), me.user.id, since=since)
    names = audit_log.names_for(db(), activity)
    mine_too = people.person_view(db(), me.user.id, now=now())
    return render_template(
        "security/index.html",
        me=me,
        enabled=enabled,
        fresh=is_fresh(me, now()),
        required=me.tenant.require_totp_for_admins and me.user.role == "admin",
        start=StartForm(next=_next()),
        remove=RemoveForm(),
        renew=ActionForm(),
        codes_left=mfa.recovery_codes_left(db(), me.user) if enabled else 0,
        alerts=mine.rows,
        next=_next(),
        language=LanguageForm(),
        days=people.HISTORY_DAYS,
        activity=[(event, in_words(event, names, viewer_id=me.user.id)) for event in activity],
        signed_out=mine_too.history,
        devices_by_id=mine_too.devices_by_id,
        end_messages=END_MESSAGES,
    )


@bp.post("/account/security/totp")
@login_required
def start() -> Response | str:
    """Begin adding an authenticator app: the secret and QR code, shown this once."""
    form = StartForm()
    if not form.validate_on_submit():
        return redirect(url_for("security.index"))  # type: ignore[return-value]
    try:
        enrolment = totp.start(
            db(),
            services().hasher,
            current(),
            now=now(),
            origin=origin(),
            issuer=current_app.config["PRODUCT_NAME"],
        )
    except FreshSignInRequired:
        return _again()
    except ValidationError as error:
        flash(said(error))
        return redirect(url_for("security.index"))  # type: ignore[return-value]
    return render_template(
        "security/enrol.html",
        **enrolment_page(enrolment),
        form=ConfirmForm(next=_next()),
        confirm_url=url_for("security.confirm"),
        at_sign_in=False,
    )


@bp.post("/account/security/totp/confirm")
@login_required
def confirm() -> Response | tuple[str, int] | str:
    """The app's first code turns two-step sign-in on; the answer shows the ten recovery
    codes, this once."""
    form = ConfirmForm()
    if form.validate_on_submit():
        try:
            ended, codes = mfa.add_app(
                db(),
                services().hasher,
                current(),
                form.code.data or "",
                now=now(),
                origin=origin(),
                sign_out_others=bool(form.sign_out_others.data),
            )
        except (InvalidCode, ValidationError) as error:
            form.code.errors = [*form.code.errors, said(error)]
        else:
            flash(
                _(
                    "Authenticator app added. From now on, signing in takes the emailed code "
                    "and then your app's code."
                )
            )
            if ended:
                flash(_signed_out(len(ended)))
            return render_template(
                "security/recovery_codes.html",
                codes=codes,
                next=_next() or url_for("security.index"),
                at_sign_in=False,
            )
    page = render_template(
        "security/enrol.html",
        secret=None,
        qr=None,
        form=form,
        confirm_url=url_for("security.confirm"),
        at_sign_in=False,
    )
    return page, 422


@bp.post("/account/security/recovery-codes")
@login_required
def recovery_codes() -> Response | str:
    """Ten new recovery codes (the old ones stop working), shown this once. Needs a
    sign-in from the last 15 minutes."""
    form = ActionForm()
    if not form.validate_on_submit():
        return redirect(url_for("security.index"))  # type: ignore[return-value]
    try:
        codes = mfa.renew_recovery_codes(
            db(), services().hasher, current(), now=now(), origin=origin()
        )
    except FreshSignInRequired:
        return _again()
    except ValidationError as error:
        flash(said(error))
        return redirect(url_for("security.index"))  # type: ignore[return-value]
    return render_template(
        "security/recovery_codes.html",
        codes=codes,
        next=url_for("security.index"),
        at_sign_in=False,
        renewed=True,
    )


@bp.post("/account/security/totp/remove")
@login_required
def remove() -> Response:
    form = RemoveForm()
    if not form.validate_on_submit():
        return redirect(url_for("security.index"))  # type: ignore[return-value]
    try:
        ended = totp.remove(
            db(),
            current(),
            now=now(),
            origin=origin(),
            sign_out_others=bool(form.sign_out_others.data),
        )
    except FreshSignInRequired:
        return _again()
    flash(_("Authenticator app removed. Sign-in codes now come by email only."))
    if ended:
        flash(_signed_out(len(ended)))
    return redirect(url_for("security.index"))  # type: ignore[return-value]


def _signed_out(count: int) -> str:
    return ngettext(
        "Signed out %(num)s other session.", "Signed out %(num)s other sessions.", count
    )


@bp.route("/account/not-me/<token>", methods=["GET", "POST"])
def not_me(token: str) -> Response | tuple[str, int] | str:
    """GET: what the link is about, and a button. POST: end that sign-in."""
    form = ActionForm()
    hasher = services().hasher
    try:
        if request.method == "POST" and form.validate_on_submit():
            report = disown_sign_in(db(), hasher, token, now=now(), origin=origin())
            page = render_template("security/not_me.html", report=report, done=True)
            response = Response(page)
            if current_user.is_authenticated and current().session.id == report.session.id:
                clear_session_cookie(response)
            return response
        report = find_not_me(db(), hasher, token, now=now())
    except (NotFound, ValidationError) as error:
        return render_template("security/not_me.html", problem=said(error)), error.status
    return render_template("security/not_me.html", report=report, form=form, done=False)
