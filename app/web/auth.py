"""Signing in with an emailed code, and signing out."""

from __future__ import annotations

import unicodedata
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext, ngettext
from flask_login import current_user, login_required

from app.core import codes, reauth, signin
from app.core import mfa as second_factor
from app.core.errors import (
    ChallengeLocked,
    InvalidCode,
    MfaEnrolmentRequired,
    MfaRequired,
    RateLimited,
    SessionLimitReached,
    TenantChoiceRequired,
    ValidationError,
)
from app.core.passkey_rules import PasskeyEnrolmentRequired, PasskeyRequired
from app.core.sessions import END_MESSAGES, end_session
from app.web.authentication import current, origin
from app.web.cookies import (
    DEVICE_COOKIE,
    clear_session_cookie,
    set_device_cookie,
    set_session_cookie,
)
from app.web.forms import ActionForm, CodeForm, EmailForm, EnrolForm, SecondFactorForm
from app.web.i18n import said
from app.web.templating import enrolment_page
from app.web.unit_of_work import db, now, services

bp = Blueprint("auth", __name__)


def safe_next(target: str | None) -> str | None:
    """A local path to return to after sign-in; anything else is dropped (None), never an
    error: another host ("//x", "https://x"), a backslash (browsers read it as a slash),
    and any control or line-separator character (CR, LF, tab, NUL, DEL, C1, U+2028…).
    ``urlsplit`` silently strips some of those before it judges a URL, so a target that
    holds one is never checked as what it would become; and the raw string would then go
    into a ``Location`` header, where a line break fails the answer."""
    if (
        not isinstance(target, str)
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(unicodedata.category(char) in _UNSAFE_CATEGORIES for char in target)
    ):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


#: control characters (C0, DEL, C1) and the line and paragraph separators
_UNSAFE_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


@bp.get("/")
def index() -> Response:
    if current_user.is_authenticated:
        return redirect(url_for("devices.index"))  # type: ignore[return-value]
    return redirect(url_for("auth.login"))  # type: ignore[return-value]


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int, dict[str, str]]:
    if request.method == "GET" and current_user.is_authenticated:
        return redirect(url_for("devices.index"))  # type: ignore[return-value]
    form = EmailForm()
    if form.validate_on_submit():
        try:
            challenge = codes.request_code(
                db(),
                services().hasher,
                form.email.data or "",
                now=now(),
                origin=origin(),
                budgets=services().budgets,
                product=current_app.config["PRODUCT_NAME"],
            )
        except ValidationError as error:
            form.email.errors = [*form.email.errors, said(error)]
        except RateLimited as error:
            form.email.errors = [*form.email.errors, said(error)]
            page = render_template("auth/login.html", form=form, notice=None, reason="")
            return page, 429, {"Retry-After": str(error.details["retry_after"])}
        else:
            session["signin"] = {
                "challenge": challenge.id,
                "email": challenge.email,
                "next": safe_next(request.args.get("next")),
            }
            return redirect(url_for("auth.code"))  # type: ignore[return-value]
    reason = request.args.get("reason", "")
    return render_template(
        "auth/login.html",
        form=form,
        notice=gettext(END_MESSAGES[reason]) if reason in END_MESSAGES else None,
        reason=reason,
    )


@bp.route("/login/code", methods=["GET", "POST"])
def code() -> Response | str:
    flow = session.get("signin")
    if not flow:
        return redirect(url_for("auth.login"))  # type: ignore[return-value]
    if next_step := pending_step(flow):  # the code was used up: the next step waits
        return redirect(next_step)  # type: ignore[return-value]
    form = CodeForm()
    if form.validate_on_submit():
        try:
            result = signin.sign_in(
                db(),
                services().hasher,
                flow["challenge"],
                form.code.data or "",
                now=now(),
                origin=origin(),
                budgets=services().budgets,
                device_cookie=request.cookies.get(DEVICE_COOKIE),
                trust_device=bool(form.trust_device.data),
                end_session_id=form.end_session.data or None,
                tenant_id=form.tenant.data or None,
            )
        except SessionLimitReached as error:
            # deny mode: the code was right but not used up; the person picks a session
            # to end (the same code comes back with it) or cancels.
            hidden = {"code": form.code.data, "tenant": form.tenant.data}
            if form.trust_device.data:
                hidden["trust_device"] = "y"
            return _choose_session(error, url_for("auth.code"), hidden, form.end_session.data)
        except TenantChoiceRequired as error:
            # The address has accounts in several organisations: the code was right and
            # is not used up; it comes back with the organisation picked.
            page = render_template(
                "auth/tenants.html",
                form=form,
                tenants=error.details["tenants"],
                email=flow["email"],
                problem=said(error) if form.tenant.data else None,
            )
            return page, 409  # type: ignore[return-value]
        except (MfaRequired, MfaEnrolmentRequired, PasskeyEnrolmentRequired) as error:
            return to_next_step(flow, error)
        except ChallengeLocked as error:
            form.code.errors = [*form.code.errors, said(error)]
            return render_template(
                "auth/code.html", form=form, email=flow["email"], locked=True, resend=ActionForm()
            )
        except (InvalidCode, ValidationError, PasskeyRequired) as error:
            form.code.errors = [*form.code.errors, said(error)]
        else:
            return _signed_in(result, flow)
    return render_template(
        "auth/code.html", form=form, email=flow["email"], locked=False, resend=ActionForm()
    )


#: the page of each second step, by its key in the sign-in flow (the step's id)
_STEP_PAGES = {"mfa": "auth.mfa", "enrol": "auth.enrol", "passkey": "passkeys.enrol_page"}


def pending_step(flow: dict[str, Any]) -> str | None:
    """The page of the second step the sign-in ``flow`` waits on, if any."""
    return next((url_for(page) for key, page in _STEP_PAGES.items() if flow.get(key)), None)


def to_next_step(
    flow: dict[str, Any], error: MfaRequired | MfaEnrolmentRequired | PasskeyEnrolmentRequired
) -> Response:
    """Keep the second step in the flow and go to its page."""
    step = error.details["step"]
    key = {
        MfaRequired: "mfa",
        MfaEnrolmentRequired: "enrol",
        PasskeyEnrolmentRequired: "passkey",
    }[type(error)]
    kept = {k: v for k, v in flow.items() if k not in _STEP_PAGES and k != "recovery_only"}
    session["signin"] = {**kept, key: step.id}
    if step.options.get("recovery_only"):
        session["signin"]["recovery_only"] = True
    return redirect(url_for(_STEP_PAGES[key]))  # type: ignore[return-value]


def _choose_session(
    error: SessionLimitReached,
    action: str,
    hidden: dict[str, Any],
    chosen: str | None,
    *,
    passkey: bool = False,
) -> Response:
    """deny mode's page: pick the live session to end (posted back to ``action`` with
    ``hidden``, the step's own fields) or cancel; 409. ``passkey``: the sign-in used a
    passkey, not a code (the page says which was right)."""
    problem = None
    if request.form.get("choosing"):
        problem = (
            gettext("That session has ended already. Choose another one.")
            if chosen
            else gettext("Choose the session to end.")
        )
    page = render_template(
        "auth/limit.html",
        action=action,
        hidden={name: value for name, value in hidden.items() if value},
        sessions=error.details["sessions"],
        devices=error.details.get("devices", {}),
        also_ends=error.details.get("also_ends", 0),
        message=said(error),
        problem=problem,
        passkey=passkey,
    )
    return Response(page, 409)


def _signed_in(result: signin.SignIn, flow: dict[str, Any]) -> Response:
    """The answer to a finished sign-in: the session cookie (and a new device cookie),
    then where the person was going. Nothing of the flow before sign-in carries over."""
    session.clear()  # the CSRF token included
    if result.replaced is not None:
        flash(gettext("Signed in. The session you chose was ended."))
    elif result.evicted:
        limit = result.tenant.max_sessions_per_user
        flash(
            ngettext(
                "Signed in. You were at your organisation's limit of %(num)s session, so "
                "your least recently active one was signed out.",
                "Signed in. You were at your organisation's limit of %(num)s sessions, so "
                "your least recently active one was signed out.",
                limit,
            )
        )
    if result.second_factor == "recovery_code":
        flash(
            gettext(
                "Signed in with a recovery code: it will not work again. Make new codes on "
                "your security page when you run low."
            )
        )
    response = redirect(flow.get("next") or url_for("devices.index"))
    _set_cookies(response, result)  # type: ignore[arg-type]
    return response  # type: ignore[return-value]


def _set_cookies(response: Response, result: signin.SignIn) -> None:
    token = services().keys.sign(
        user_id=result.user.id,
        tenant_id=result.tenant.id,
        session_id=result.session.id,
        now=now(),
        expires_at=result.session.absolute_deadline,
    )
    set_session_cookie(response, token, result.session.absolute_deadline)
    if result.device_cookie:
        set_device_cookie(response, result.device_cookie)


def _second_factor(raw: str) -> dict[str, str]:
    """The one field of the second-step pages takes the app's code or a recovery code."""
    raw = raw.strip()
    return {"code": raw} if second_factor.looks_like_app_code(raw) else {"recovery_code": raw}


@bp.route("/login/mfa", methods=["GET", "POST"])
def mfa() -> Response | str:
    """The second step of a sign-in: the authenticator app's code, or a recovery code."""
    flow = session.get("signin")
    if not flow or not flow.get("mfa"):
        return redirect(url_for("auth.login"))  # type: ignore[return-value]
    form = SecondFactorForm()
    if form.validate_on_submit():
        try:
            result = signin.complete_mfa(
                db(),
                services().hasher,
                flow["mfa"],
                **_second_factor(form.code.data or ""),
                now=now(),
                origin=origin(),
                budgets=services().budgets,
                device_cookie=request.cookies.get(DEVICE_COOKIE),
                end_session_id=form.end_session.data or None,
            )
        except SessionLimitReached as error:
            return _choose_session(
                error, url_for("auth.mfa"), {"code": form.code.data}, form.end_session.data
            )
        except PasskeyEnrolmentRequired as error:  # require_passkeys and none yet
            return to_next_step(flow, error)
        except ChallengeLocked as error:
            session.pop("signin", None)
            flash(said(error))
            return redirect(url_for("auth.login"))  # type: ignore[return-value]
        except (InvalidCode, ValidationError) as error:
            form.code.errors = [*form.code.errors, said(error)]
        else:
            return _signed_in(result, flow)
    return render_template(
        "auth/mfa.html",
        form=form,
        action=url_for("auth.mfa"),
        fresh=False,
        email=flow["email"],
        recovery_only=bool(flow.get("recovery_only")),
    )


@bp.route("/login/enrol", methods=["GET", "POST"])
def enrol() -> Response | str:
    """The second step of an admin's sign-in where the tenant requires an authenticator
    app and they have none: add one now. GET explains; POST shows the secret and QR code
    (once, in the answer to a POST, never in a URL)."""
    flow = session.get("signin")
    if not flow or not flow.get("enrol"):
        return redirect(url_for("auth.login"))  # type: ignore[return-value]
    start = ActionForm()
    if request.method == "POST" and start.validate_on_submit():
        try:
            enrolment = signin.start_enrolment(
                db(),
                services().hasher,
                flow["enrol"],
                now=now(),
                origin=origin(),
                issuer=current_app.config["PRODUCT_NAME"],
            )
        except (InvalidCode, ChallengeLocked) as error:
            session.pop("signin", None)
            flash(said(error))
            return redirect(url_for("auth.login"))  # type: ignore[return-value]
        return render_template(
            "security/enrol.html",
            **enrolment_page(enrolment),
            form=EnrolForm(),
            confirm_url=url_for("auth.enrol_confirm"),
            at_sign_in=True,
        )
    return render_template("auth/enrol.html", start=start, email=flow["email"])


@bp.post("/login/enrol/confirm")
def enrol_confirm() -> Response | tuple[str, int]:
    """The app's first code: the app is added, the sign-in finishes, and the ten recovery
    codes are shown, this once, on the answer (which sets the session cookie)."""
    flow = session.get("signin")
    if not flow or not flow.get("enrol"):
        return redirect(url_for("auth.login"))  # type: ignore[return-value]
    form = EnrolForm()
    if form.validate_on_submit():
        try:
            result, codes = signin.complete_enrolment(
                db(),
                services().hasher,
                flow["enrol"],
                form.code.data or "",
                now=now(),
                origin=origin(),
                budgets=services().budgets,
            )
        except SessionLimitReached as error:
            # The live sessions changed since the emailed code: choose again.
            return _choose_session(
                error, url_for("auth.enrol_confirm"), {"code": form.code.data}, None
            )
        except ChallengeLocked as error:
            session.pop("signin", None)
            flash(said(error))
            return redirect(url_for("auth.login"))  # type: ignore[return-value]
        except (InvalidCode, ValidationError) as error:
            form.code.errors = [*form.code.errors, said(error)]
        else:
            session.clear()
            page = render_template(
                "security/recovery_codes.html",
                codes=codes,
                next=flow.get("next") or url_for("devices.index"),
                at_sign_in=True,
            )
            response = Response(page)
            _set_cookies(response, result)
            return response
    page = render_template(
        "security/enrol.html",
        secret=None,
        qr=None,
        form=form,
        confirm_url=url_for("auth.enrol_confirm"),
        at_sign_in=True,
    )
    return page, 422


@bp.post("/login/cancel")
def cancel() -> Response:
    """Give up a sign-in in progress (from the choose-a-session page): nothing changes on
    the person's other devices and the code can no longer be used from this browser."""
    session.pop("signin", None)
    flash(gettext("Sign-in cancelled. Nothing changed on your other devices."))
    return redirect(url_for("auth.login"))  # type: ignore[return-value]


@bp.post("/login/resend")
def resend() -> Response:
    flow = session.get("signin")
    form = ActionForm()
    if not flow or not form.validate_on_submit():
        return redirect(url_for("auth.login"))  # type: ignore[return-value]
    challenge = codes.request_code(
        db(),
        services().hasher,
        flow["email"],
        now=now(),
        origin=origin(),
        budgets=services().budgets,
        product=current_app.config["PRODUCT_NAME"],
    )
    session["signin"] = {**flow, "challenge": challenge.id}
    flash(gettext("We sent a new code. Earlier codes no longer work."))
    return redirect(url_for("auth.code"))  # type: ignore[return-value]


@bp.post("/logout")
@login_required
def logout() -> Response:
    form = ActionForm()
    if form.validate_on_submit():
        me = current()
        end_session(db(), me.session, "logout", now=now(), actor_id=me.user.id, origin=origin())
    response = redirect(url_for("auth.login", reason="logout"))
    clear_session_cookie(response)  # type: ignore[arg-type]
    session.clear()
    return response  # type: ignore[return-value]


@bp.route("/login/again", methods=["GET", "POST"])
@login_required
def again() -> Response | str:
    """Confirm it is you with a fresh code (admin work needs a recent sign-in), then, for
    a person with an authenticator app, its code. The current session stays; only its
    sign-in time moves."""
    me = current()
    flow = session.get("reauth")
    next_url = safe_next(request.args.get("next")) or (flow or {}).get("next")
    form = CodeForm()
    send = ActionForm(prefix="send")
    if request.method == "POST" and "send-csrf_token" in request.form and send.validate_on_submit():
        challenge = codes.request_code(
            db(),
            services().hasher,
            me.user.email,
            now=now(),
            origin=origin(),
            budgets=services().budgets,
            product=current_app.config["PRODUCT_NAME"],
            account=me.user,
        )
        session["reauth"] = {"challenge": challenge.id, "next": next_url}
        return redirect(url_for("auth.again"))  # type: ignore[return-value]
    if flow and flow.get("mfa"):
        return redirect(url_for("auth.again_mfa"))  # type: ignore[return-value]
    if flow and form.validate_on_submit():
        try:
            reauth.reauthenticate(
                db(),
                services().hasher,
                me,
                flow["challenge"],
                form.code.data or "",
                now=now(),
                origin=origin(),
                budgets=services().budgets,
                device_cookie=request.cookies.get(DEVICE_COOKIE),
            )
        except MfaRequired as error:
            session["reauth"] = {**flow, "mfa": error.details["step"].id}
            return redirect(url_for("auth.again_mfa"))  # type: ignore[return-value]
        except (InvalidCode, ChallengeLocked, ValidationError) as error:
            form.code.errors = [*form.code.errors, said(error)]
        else:
            session.pop("reauth", None)
            return redirect(flow.get("next") or url_for("devices.index"))  # type: ignore[return-value]
    return render_template(
        "auth/again.html", form=form, send=send, sent=bool(flow), email=me.user.email
    )


@bp.route("/login/again/mfa", methods=["GET", "POST"])
@login_required
def again_mfa() -> Response | str:
    """A fresh sign-in's second step: the authenticator app's code, or a recovery code."""
    me = current()
    flow = session.get("reauth")
    if not flow or not flow.get("mfa"):
        return redirect(url_for("auth.again"))  # type: ignore[return-value]
    form = SecondFactorForm()
    if form.validate_on_submit():
        try:
            reauth.complete_reauth(
                db(),
                services().hasher,
                me,
                flow["mfa"],
                **_second_factor(form.code.data or ""),
                now=now(),
                origin=origin(),
                budgets=services().budgets,
                device_cookie=request.cookies.get(DEVICE_COOKIE),
            )
        except ChallengeLocked as error:
            session.pop("reauth", None)
            flash(said(error))
            return redirect(url_for("auth.again", next=flow.get("next")))  # type: ignore[return-value]
        except (InvalidCode, ValidationError) as error:
            form.code.errors = [*form.code.errors, said(error)]
        else:
            session.pop("reauth", None)
            return redirect(flow.get("next") or url_for("devices.index"))  # type: ignore[return-value]
    return render_template(
        "auth/mfa.html",
        form=form,
        action=url_for("auth.again_mfa"),
        fresh=True,
        email=me.user.email,
    )
