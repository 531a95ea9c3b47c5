"""Passkeys on the web and in the API (app.core.passkeys does the work).

Pages (blueprint ``passkeys``; static/passkeys.js runs the browser's side, no inline
script):

* the sign-in page's "Sign in with a passkey" button and the email field's autofill
  (conditional mediation) fetch request options from ``POST /api/auth/passkey/options``
  and post the browser's answer to ``POST /login/passkey``, which sets the session and
  device cookies like a code sign-in and answers ``{"redirect": ...}`` (in deny mode at
  the session limit, 409 with ``choose``: the script posts to ``/login/passkey/limit``,
  the code flow's choose-a-session page, which finishes the sign-in with the session
  chosen and no second ceremony);
* the security page adds a passkey through the API (``/api/account/passkeys/options``,
  ``POST /api/account/passkeys``: same-origin JSON riding on the session cookie) and
  renames or removes one with plain forms;
* the fresh sign-in page (/login/again) offers "Use a passkey" through
  ``POST /login/again/passkey/options`` and ``POST /login/again/passkey``;
* "Add a passkey to finish signing in" (``/login/passkey/add``), the second step where
  the tenant requires passkeys and the person has none (app.core.passkey_enrolment):
  ``POST /login/passkey/add/options`` and ``POST /login/passkey/add`` (which sets the
  session and device cookies), the step's id kept in the flow cookie as the app's step
  is. The API does the same with ``stepId`` (``/api/auth/passkey/enrol/options``,
  ``/api/auth/passkey/enrol``).

The page routes that take JSON carry the page's CSRF token in ``X-CSRFToken`` (Flask-WTF
reads it). The API routes (blueprint ``passkeys_api``, under /api) follow the API's own
CSRF rule (app.web.api_csrf); their bodies and answers are declared in
app.web.passkey_shapes, their OpenAPI words in app.web.passkey_operations.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import login_required
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy import select
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from app.core import passkey_enrolment, passkey_management, passkeys, signin
from app.core.access import FreshSignInRequired
from app.core.errors import (
    N_,
    HoldfastError,
    InvalidCode,
    NotFound,
    SessionLimitReached,
    ValidationError,
)
from app.core.passkey_challenges import RelyingParty
from app.core.sessions import Current
from app.models import Tenant
from app.web import passkey_shapes as shapes
from app.web.api_answers import limit_answer, session_length, signed_in
from app.web.api_csrf import guard
from app.web.auth import _choose_session, _set_cookies, safe_next
from app.web.authentication import current, origin
from app.web.cookies import DEVICE_COOKIE
from app.web.extensions import csrf
from app.web.forms import ActionForm
from app.web.i18n import said
from app.web.json_input import public_id
from app.web.unit_of_work import db, now, services

bp = Blueprint("passkeys", __name__)
api_bp = Blueprint("passkeys_api", __name__, url_prefix="/api")
csrf.exempt(api_bp)
# The API's own rules (body size, the cookie-write CSRF rule) apply here as on app.web.api.
guard(api_bp)


def relying_party() -> RelyingParty:
    """The relying party of this deployment: the host of HOLDFAST_BASE_URL."""
    return RelyingParty.from_base_url(
        current_app.config["BASE_URL"], current_app.config["PRODUCT_NAME"]
    )


class RenameForm(FlaskForm):
    name = StringField(
        _l("Name"),
        validators=[
            DataRequired(_l("Give the passkey a name.")),
            Length(
                max=passkey_management.MAX_NAME,
                message=_l(
                    "A passkey's name is at most %(max)s characters.",
                    max=passkey_management.MAX_NAME,
                ),
            ),
        ],
    )


def _tenant_id(slug: str | None) -> str | None:
    """The tenant a sign-in is limited to, by slug (None: any). Raises ValidationError
    naming ``tenant`` when no tenant has that slug."""
    if slug is None:
        return None
    found = db().scalar(
        select(Tenant.id).where(Tenant.slug == slug).execution_options(all_tenants=True)
    )
    if found is None:
        raise ValidationError(N_("No such tenant."), field="tenant")
    return found


# --- the API -----------------------------------------------------------------------------------


@api_bp.post("/auth/passkey/options")
def sign_in_options() -> Response:
    """Request options for a passkey sign-in (any discoverable passkey; ``tenant``, a
    slug, limits it to one tenant's accounts). The body may be left out."""
    body = shapes.SIGN_IN_OPTIONS.read()
    tenant_id = _tenant_id(body["tenant"])
    services().budgets.spend_passkey_request(db(), origin().ip, now=now())
    challenge, options = passkeys.sign_in_options(
        db(), relying_party(), now=now(), tenant_id=tenant_id
    )
    return jsonify(shapes.options(challenge.id, options))


@api_bp.post("/auth/passkey/verify")
def sign_in_verify() -> Response | tuple[Response, int]:
    """Exchange a passkey answer for a session: 201 as POST /api/auth/verify."""
    body = shapes.SIGN_IN.read()
    options = signin.Options(
        device_name=body["deviceName"],
        device_kind=body["deviceType"],
        expires_in=session_length(body["expiresIn"]),
        extend_on_activity=body["extendOnActivity"],
        end_session_id=body["endSessionId"],
    )
    try:
        result = passkeys.sign_in(
            db(),
            services().hasher,
            relying_party(),
            body["challengeId"],
            body["credential"],
            options,
            device_cookie=body["deviceId"] or request.cookies.get(DEVICE_COOKIE),
            now=now(),
            origin=origin(),
        )
    except SessionLimitReached as error:
        return limit_answer(error)
    return signed_in(result, cookie_wanted=not body["deviceId"])


@api_bp.post("/auth/passkey/enrol/options")
def enrol_options() -> Response:
    """Creation options for the first passkey that finishes a sign-in (the ``stepId`` of
    a 403 passkey_enrolment_required answer)."""
    body = shapes.ENROL_OPTIONS.read()
    services().budgets.spend_passkey_request(db(), origin().ip, now=now())
    challenge, options = passkey_enrolment.options(db(), relying_party(), body["stepId"], now=now())
    return jsonify(shapes.options(challenge.id, options))


@api_bp.post("/auth/passkey/enrol")
def enrol() -> Response | tuple[Response, int]:
    """Add the first passkey and finish the sign-in: 201 as POST /api/auth/verify."""
    body = shapes.ENROL.read()
    try:
        result = passkey_enrolment.complete(
            db(),
            services().hasher,
            relying_party(),
            body["stepId"],
            body["challengeId"],
            body["credential"],
            name=body["name"],
            end_session_id=body["endSessionId"],
            now=now(),
            origin=origin(),
        )
    except SessionLimitReached as error:
        return limit_answer(error)
    return signed_in(result, cookie_wanted=True)


@api_bp.post("/account/passkeys/options")
@login_required
def registration_options() -> Response:
    """Creation options for a new passkey (a sign-in from the last 15 minutes)."""
    challenge, options = passkeys.registration_options(db(), relying_party(), current(), now=now())
    return jsonify(shapes.options(challenge.id, options))


@api_bp.post("/account/passkeys")
@login_required
def add() -> tuple[Response, int]:
    """Store the new passkey: 201 with it."""
    body = shapes.ADD.read()
    passkey = passkeys.register(
        db(),
        relying_party(),
        current(),
        body["challengeId"],
        body["credential"],
        name=body["name"],
        now=now(),
        origin=origin(),
    )
    names = passkey_management.device_names(db(), [passkey])
    return jsonify(shapes.passkey_item(passkey, names)), 201


@api_bp.get("/account/passkeys")
@login_required
def list_mine() -> Response:
    mine = passkey_management.list_passkeys(db(), current().user)
    names = passkey_management.device_names(db(), mine)
    return jsonify(passkeys=[shapes.passkey_item(p, names) for p in mine])


@api_bp.patch("/account/passkeys/<passkey_id>")
@login_required
def rename(passkey_id: str) -> Response:
    """Rename one of the caller's passkeys: 200 with it."""
    body = shapes.RENAME.read()
    passkey = passkey_management.rename(
        db(), current(), public_id(passkey_id), body["name"], now=now(), origin=origin()
    )
    names = passkey_management.device_names(db(), [passkey])
    return jsonify(shapes.passkey_item(passkey, names))


@api_bp.delete("/account/passkeys/<passkey_id>")
@login_required
def delete(passkey_id: str) -> Response:
    passkey_management.remove(db(), current(), public_id(passkey_id), now=now(), origin=origin())
    return Response(status=204)


# --- pages ----------------------------------------------------------------------------------------


@bp.post("/login/passkey")
def sign_in_page() -> Response | tuple[Response, int]:
    """The sign-in page's passkey answer (JSON, with the page's CSRF token): the session
    and device cookies, and where to go next."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationError(N_("Send the passkey answer as JSON."))
    flow = session.get("signin") or {}
    target = safe_next(body.get("next")) or flow.get("next") or url_for("devices.index")
    try:
        result = passkeys.sign_in(
            db(),
            services().hasher,
            relying_party(),
            body.get("challengeId"),
            body.get("credential"),
            signin.Options(),
            device_cookie=request.cookies.get(DEVICE_COOKIE),
            now=now(),
            origin=origin(),
            keep_choice=True,
        )
    except SessionLimitReached as error:
        # deny mode: the passkey is proven; the person chooses the session to end on
        # the choose-a-session page (static/js/passkeys.js posts there), as with a code.
        session["passkey_limit"] = {"step": error.details["step"].id, "next": target}
        choose = url_for("passkeys.limit_page")
        return jsonify(error=said(error), code=error.code, choose=choose), error.status
    session.clear()
    response = jsonify(redirect=target)
    _set_cookies(response, result)
    return response


@bp.post("/login/passkey/limit")
def limit_page() -> Response:
    """deny mode at the session limit after a passkey sign-in: the choose-a-session page
    (templates/auth/limit.html, as the code flow's), then, with the session chosen, the
    sign-in finishes with no second ceremony (app.core.passkeys.finish_at_limit)."""
    flow = session.get("passkey_limit") or {}
    if not flow.get("step"):
        return redirect(url_for("auth.login"))  # type: ignore[return-value]
    chosen = request.form.get("end_session") or None
    try:
        result = passkeys.finish_at_limit(
            db(),
            services().hasher,
            flow["step"],
            end_session_id=chosen,
            now=now(),
            origin=origin(),
        )
    except SessionLimitReached as error:
        return _choose_session(error, url_for("passkeys.limit_page"), {}, chosen, passkey=True)
    except HoldfastError as error:  # the step ended, the passkey was removed...
        session.pop("passkey_limit", None)
        flash(said(error))
        return redirect(url_for("auth.login"))  # type: ignore[return-value]
    session.clear()
    flash(_("Signed in. The session you chose was ended."))
    response = redirect(flow.get("next") or url_for("devices.index"))
    _set_cookies(response, result)  # type: ignore[arg-type]
    return response  # type: ignore[return-value]


def _said_as_json(error: HoldfastError) -> tuple[Response, int]:
    """A page route's JSON error, in the page's language (static/js/passkeys.js shows it)."""
    return jsonify(error=said(error), code=error.code), error.status


@bp.get("/login/passkey/add")
def enrol_page() -> Response | str:
    """The second step of a sign-in where the tenant requires passkeys and the person has
    none: "Add a passkey to finish signing in" (static/js/passkeys.js runs the ceremony).
    No session exists until the passkey is stored; leaving the page leaves none."""
    flow = session.get("signin") or {}
    if not flow.get("passkey"):
        return redirect(url_for("auth.login"))  # type: ignore[return-value]
    return render_template("auth/add_passkey.html", email=flow.get("email"))


@bp.post("/login/passkey/add/options")
def enrol_page_options() -> Response | tuple[Response, int]:
    """Creation options bound to the flow's passkey step (JSON, the page's CSRF token)."""
    step_id = (session.get("signin") or {}).get("passkey")
    try:
        if not step_id:
            raise InvalidCode(
                N_("That sign-in step has ended. Start again with a new emailed code.")
            )
        services().budgets.spend_passkey_request(db(), origin().ip, now=now())
        challenge, options = passkey_enrolment.options(db(), relying_party(), step_id, now=now())
    except HoldfastError as error:
        return _said_as_json(error)
    return jsonify(shapes.options(challenge.id, options))


@bp.post("/login/passkey/add")
def enrol_page_finish() -> Response | tuple[Response, int]:
    """The browser's answer: the passkey is stored and the sign-in finishes (session and
    device cookies); ``{"redirect": ...}``."""
    flow = session.get("signin") or {}
    body = request.get_json(silent=True)
    try:
        if not flow.get("passkey"):
            raise InvalidCode(
                N_("That sign-in step has ended. Start again with a new emailed code.")
            )
        if not isinstance(body, dict):
            raise ValidationError(N_("Send the passkey answer as JSON."))
        result = passkey_enrolment.complete(
            db(),
            services().hasher,
            relying_party(),
            flow["passkey"],
            body.get("challengeId"),
            body.get("credential"),
            now=now(),
            origin=origin(),
        )
    except SessionLimitReached as error:
        # The live sessions changed since the code (where the choice was made): rare.
        limited = SessionLimitReached(
            N_(
                "You reached your organisation's session limit meanwhile. Sign in again to "
                "choose a session to end."
            )
        )
        return jsonify(error=said(limited), code=error.code), error.status
    except HoldfastError as error:
        return _said_as_json(error)
    session.clear()
    flash(_("Passkey added, and you are signed in. Next time, sign in with your passkey."))
    response = jsonify(redirect=flow.get("next") or url_for("devices.index"))
    _set_cookies(response, result)
    return response


@bp.post("/login/again/passkey/options")
@login_required
def reauth_options() -> Response:
    challenge, options = passkeys.reauth_options(db(), relying_party(), current(), now=now())
    return jsonify(challengeId=challenge.id, publicKey=options)


@bp.post("/login/again/passkey")
@login_required
def reauth() -> Response:
    """A fresh sign-in with a passkey: the session's sign-in time moves to now."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationError(N_("Send the passkey answer as JSON."))
    passkeys.reauthenticate(
        db(),
        services().hasher,
        relying_party(),
        current(),
        body.get("challengeId"),
        body.get("credential"),
        now=now(),
        origin=origin(),
    )
    flow = session.pop("reauth", None) or {}
    target = safe_next(body.get("next")) or flow.get("next") or url_for("devices.index")
    return jsonify(redirect=target)


@bp.post("/account/passkeys/<passkey_id>/name")
@login_required
def rename_page(passkey_id: str) -> Response:
    form = RenameForm()
    if form.validate_on_submit():
        try:
            passkey_management.rename(
                db(), current(), passkey_id, form.name.data, now=now(), origin=origin()
            )
        except (NotFound, ValidationError) as error:
            flash(said(error))
        else:
            flash(_("Passkey renamed."))
    else:
        for errors in form.errors.values():
            flash(str(errors[0]))
    return redirect(url_for("security.index") + "#passkeys")  # type: ignore[return-value]


@bp.post("/account/passkeys/<passkey_id>/remove")
@login_required
def remove_page(passkey_id: str) -> Response:
    form = ActionForm()
    if form.validate_on_submit():
        try:
            removed = passkey_management.remove(
                db(), current(), passkey_id, now=now(), origin=origin()
            )
        except FreshSignInRequired:
            back = url_for("security.index") + "#passkeys"
            return redirect(url_for("auth.again", next=back))  # type: ignore[return-value]
        except HoldfastError as error:
            flash(said(error))
        else:
            flash(
                _(
                    "Passkey \u201c%(name)s\u201d removed. It no longer signs you in.",
                    name=removed.name,
                )
            )
    return redirect(url_for("security.index") + "#passkeys")  # type: ignore[return-value]


def security_card(me: Current) -> dict[str, Any]:
    """What templates/security/_passkeys.html shows."""
    mine = passkey_management.list_passkeys(db(), me.user)
    return {
        "passkeys": mine,
        "passkey_devices": passkey_management.device_names(db(), mine),
        "passkeys_allowed": me.tenant.allow_passkeys,
        "passkeys_required": me.tenant.allow_passkeys and me.tenant.require_passkeys,
        "rename_form": RenameForm(),
        "remove_form": ActionForm(),
    }


@bp.app_template_global()
def passkey_card() -> dict[str, Any]:
    """The security page's passkeys card, for templates/security/_passkeys.html (and
    whether to offer a passkey on the fresh sign-in page)."""
    return security_card(current())


#: how a session was signed in (sessions.sign_in_method), in an admin's words
SIGN_IN_METHOD_LABELS = {
    "code": _l("emailed code"),
    "app": _l("code + authenticator app"),
    "recovery": _l("code + recovery code"),
    "passkey": _l("passkey"),
    "link": _l("emailed link"),
    "passkey_added": _l("code + passkey added"),
}


@bp.app_template_filter("sign_in_method")
def sign_in_method_label(method: str | None) -> Markup:
    """The admin pages' "Signed in" cell's second line: how (nothing for old sessions)."""
    if not method:
        return Markup("")
    label = SIGN_IN_METHOD_LABELS.get(method, method)
    return Markup('<small class="sign-in-method method-{}">{}</small>').format(
        method, _("with %(method)s", method=str(label))
    )


@bp.app_template_global()
def passkey_share() -> int:
    """The dashboard's figure: the share of today's (UTC) sign-ins that used a passkey."""
    moment = now()
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return passkey_management.passkey_share(db(), current().facts.session.tenant_id, midnight)
