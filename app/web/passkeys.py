"""Passkeys on the web and in the API (app.core.passkeys does the work).

Pages (blueprint ``passkeys``; static/passkeys.js runs the browser's side, no inline
script):

* the sign-in page's "Sign in with a passkey" button and the email field's autofill
  (conditional mediation) fetch request options from ``POST /api/auth/passkey/options``
  and post the browser's answer to ``POST /login/passkey``, which sets the session and
  device cookies like a code sign-in and answers ``{"redirect": ...}``;
* the security page adds a passkey through the API (``/api/account/passkeys/options``,
  ``POST /api/account/passkeys``: same-origin JSON riding on the session cookie) and
  renames or removes one with plain forms;
* the fresh sign-in page (/login/again) offers "Use a passkey" through
  ``POST /login/again/passkey/options`` and ``POST /login/again/passkey``.

The page routes that take JSON carry the page's CSRF token in ``X-CSRFToken`` (Flask-WTF
reads it). The API routes (blueprint ``passkeys_api``, under /api) follow the API's own
CSRF rule (app.web.api).
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
    request,
    session,
    url_for,
)
from flask_login import login_required
from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from app.core import passkeys, signin
from app.core.access import FreshSignInRequired
from app.core.errors import HoldfastError, NotFound, SessionLimitReached, ValidationError
from app.core.sessions import Current
from app.models import Passkey, Tenant
from app.web import api
from app.web.auth import _set_cookies, safe_next
from app.web.authentication import current, origin
from app.web.cookies import DEVICE_COOKIE
from app.web.extensions import csrf
from app.web.forms import ActionForm
from app.web.session_status import iso
from app.web.unit_of_work import db, now, services

bp = Blueprint("passkeys", __name__)
api_bp = Blueprint("passkeys_api", __name__, url_prefix="/api")
csrf.exempt(api_bp)
# The API's own rules (body size, the cookie-write CSRF rule) apply here as on app.web.api.
api_bp.before_request(api._refuse_huge_bodies)
api_bp.before_request(api._cookie_writes_come_from_this_origin)


def relying_party() -> passkeys.RelyingParty:
    """The relying party of this deployment: the host of HOLDFAST_BASE_URL."""
    return passkeys.RelyingParty.from_base_url(
        current_app.config["BASE_URL"], current_app.config["PRODUCT_NAME"]
    )


class RenameForm(FlaskForm):
    name = StringField(
        "Name",
        validators=[DataRequired("Give the passkey a name."), Length(max=passkeys.MAX_NAME)],
    )


def passkey_item(passkey: Passkey, devices: dict[str, str] | None = None) -> dict[str, Any]:
    """One passkey as the API shows it."""
    devices = devices or {}
    return {
        "id": passkey.id,
        "name": passkey.name,
        "createdAt": iso(passkey.created_at),
        "lastUsedAt": iso(passkey.last_used_at),
        "createdOn": devices.get(passkey.created_device_id or ""),
        "lastUsedOn": devices.get(passkey.last_device_id or ""),
        "synced": passkey.backup_eligible,
    }


def _tenant_id(slug: Any) -> str | None:
    """The tenant a sign-in is limited to, by slug (None: any). Unknown: 422."""
    if slug is None:
        return None
    if not isinstance(slug, str) or len(slug) > 64:
        raise ValidationError("tenant is a tenant's slug.", field="tenant")
    from sqlalchemy import select

    found = db().scalar(
        select(Tenant.id).where(Tenant.slug == slug).execution_options(all_tenants=True)
    )
    if found is None:
        raise ValidationError("No such tenant.", field="tenant")
    return found


# --- the API -----------------------------------------------------------------------------------


@api_bp.post("/auth/passkey/options")
def sign_in_options() -> Response:
    """Request options for a passkey sign-in (any discoverable passkey; ``tenant``, a
    slug, limits it to one tenant's accounts)."""
    body = api.json_body() if request.get_data(cache=True) else {}
    tenant_id = _tenant_id(body.get("tenant"))
    services().budgets.spend_passkey_request(db(), origin().ip, now=now())
    challenge, options = passkeys.sign_in_options(
        db(), relying_party(), now=now(), tenant_id=tenant_id
    )
    return jsonify(challengeId=challenge.id, publicKey=options)


@api_bp.post("/auth/passkey/verify")
def sign_in_verify() -> Response | tuple[Response, int]:
    """Exchange a passkey answer for a session: 201 as POST /api/auth/verify."""
    body = api.json_body()
    challenge_id = api.field(body, "challengeId", str, required=True, max_length=64)
    credential = body.get("credential")
    if not isinstance(credential, dict):
        raise ValidationError(
            "credential is the object PublicKeyCredential.toJSON() gives.", field="credential"
        )
    device_id = api.field(body, "deviceId", str, max_length=200)
    options = signin.Options(
        device_name=api.field(body, "deviceName", str, max_length=100),
        device_kind=api.field(body, "deviceType", str, max_length=20),
        expires_in=_expires_in(api.field(body, "expiresIn", int)),
        extend_on_activity=api.field(body, "extendOnActivity", bool),
        end_session_id=api.field(body, "endSessionId", str, max_length=40),
    )
    try:
        result = passkeys.sign_in(
            db(),
            services().hasher,
            relying_party(),
            challenge_id,
            credential,
            options,
            device_cookie=device_id or request.cookies.get(DEVICE_COOKIE),
            now=now(),
            origin=origin(),
        )
    except SessionLimitReached as error:
        return api._limit_answer(error)
    return api._signed_in(result, cookie_wanted=not device_id)


def _expires_in(value: int | None) -> int | None:
    return None if value is None else min(value, api.LONGEST_SESSION)


@api_bp.post("/account/passkeys/options")
@login_required
def registration_options() -> Response:
    """Creation options for a new passkey (a sign-in from the last 15 minutes)."""
    challenge, options = passkeys.registration_options(db(), relying_party(), current(), now=now())
    return jsonify(challengeId=challenge.id, publicKey=options)


@api_bp.post("/account/passkeys")
@login_required
def add() -> tuple[Response, int]:
    """Store the new passkey: 201 with it."""
    body = api.json_body()
    challenge_id = api.field(body, "challengeId", str, required=True, max_length=64)
    name = api.field(body, "name", str, max_length=passkeys.MAX_NAME)
    credential = body.get("credential")
    if not isinstance(credential, dict):
        raise ValidationError(
            "credential is the object PublicKeyCredential.toJSON() gives.", field="credential"
        )
    passkey = passkeys.register(
        db(),
        relying_party(),
        current(),
        challenge_id,
        credential,
        name=name,
        now=now(),
        origin=origin(),
    )
    return jsonify(passkey_item(passkey, passkeys.device_names(db(), [passkey]))), 201


@api_bp.get("/account/passkeys")
@login_required
def list_mine() -> Response:
    mine = passkeys.list_passkeys(db(), current().user)
    names = passkeys.device_names(db(), mine)
    return jsonify(passkeys=[passkey_item(p, names) for p in mine])


@api_bp.delete("/account/passkeys/<passkey_id>")
@login_required
def delete(passkey_id: str) -> Response:
    passkeys.remove(db(), current(), api.public_id(passkey_id), now=now(), origin=origin())
    return Response(status=204)


# --- pages ----------------------------------------------------------------------------------------


@bp.post("/login/passkey")
def sign_in_page() -> Response | tuple[Response, int]:
    """The sign-in page's passkey answer (JSON, with the page's CSRF token): the session
    and device cookies, and where to go next."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationError("Send the passkey answer as JSON.")
    flow = session.get("signin") or {}
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
        )
    except SessionLimitReached as error:
        message = f"{error.message}: sign in with an emailed code to choose a session to end."
        return jsonify(error=message, code=error.code), error.status
    session.clear()
    target = safe_next(body.get("next")) or flow.get("next") or url_for("devices.index")
    response = jsonify(redirect=target)
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
        raise ValidationError("Send the passkey answer as JSON.")
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
            passkeys.rename(db(), current(), passkey_id, form.name.data, now=now(), origin=origin())
        except (NotFound, ValidationError) as error:
            flash(error.message)
        else:
            flash("Passkey renamed.")
    else:
        for errors in form.errors.values():
            flash(errors[0])
    return redirect(url_for("security.index") + "#passkeys")  # type: ignore[return-value]


@bp.post("/account/passkeys/<passkey_id>/remove")
@login_required
def remove_page(passkey_id: str) -> Response:
    form = ActionForm()
    if form.validate_on_submit():
        try:
            removed = passkeys.remove(db(), current(), passkey_id, now=now(), origin=origin())
        except FreshSignInRequired:
            back = url_for("security.index") + "#passkeys"
            return redirect(url_for("auth.again", next=back))  # type: ignore[return-value]
        except HoldfastError as error:
            flash(error.message)
        else:
            flash(f"Passkey \u201c{removed.name}\u201d removed. It no longer signs you in.")
    return redirect(url_for("security.index") + "#passkeys")  # type: ignore[return-value]


def security_card(me: Current) -> dict[str, Any]:
    """What templates/security/_passkeys.html shows."""
    mine = passkeys.list_passkeys(db(), me.user)
    return {
        "passkeys": mine,
        "passkey_devices": passkeys.device_names(db(), mine),
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
    "code": "emailed code",
    "app": "code + authenticator app",
    "recovery": "code + recovery code",
    "passkey": "passkey",
    "link": "emailed link",
}


@bp.app_template_filter("sign_in_method")
def sign_in_method_label(method: str | None) -> Markup:
    """The admin pages' "Signed in" cell's second line: how (nothing for old sessions)."""
    if not method:
        return Markup("")
    label = SIGN_IN_METHOD_LABELS.get(method, method)
    return Markup('<small class="sign-in-method method-{}">with {}</small>').format(method, label)


@bp.app_template_global()
def passkey_share() -> int:
    """The dashboard's figure: the share of today's (UTC) sign-ins that used a passkey."""
    moment = now()
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return passkeys.passkey_share(db(), current().facts.session.tenant_id, midnight)
