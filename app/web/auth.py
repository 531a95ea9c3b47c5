"""Signing in with an emailed code, and signing out."""

from __future__ import annotations

import unicodedata
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
from flask_login import current_user, login_required

from app.core import signin
from app.core.errors import (
    ChallengeLocked,
    InvalidCode,
    SessionLimitReached,
    ValidationError,
)
from app.core.sessions import END_MESSAGES, end_session
from app.extensions import limiter
from app.web.context import (
    DEVICE_COOKIE,
    clear_session_cookie,
    current,
    db,
    now,
    origin,
    services,
    set_device_cookie,
    set_session_cookie,
)
from app.web.forms import ActionForm, CodeForm, EmailForm

bp = Blueprint("auth", __name__)


def _email_key() -> str:
    """The address a code is asked for: the form's field, the sign-in flow's address (for
    a resend), or the JSON API's ``email``."""
    if request.is_json:
        from app.web.api import json_email  # the API's depth-checked parse

        raw = json_email()
    else:
        raw = request.form.get("email") or (session.get("signin") or {}).get("email") or ""
    return "email:" + raw.strip().lower()[:320]


def _code_limits() -> str:
    return current_app.config["RATELIMIT_CODES"]


def _code_limits_per_ip() -> str:
    return current_app.config["RATELIMIT_CODES_PER_IP"]


#: One budget per address and one per client IP, shared by every way to ask for a code
#: (the sign-in form, "send a new code" and POST /api/auth/login).
codes_per_email = limiter.shared_limit(
    _code_limits, scope="codes-email", key_func=_email_key, methods=["POST"]
)
codes_per_ip = limiter.shared_limit(_code_limits_per_ip, scope="codes-ip", methods=["POST"])


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
@codes_per_email
@codes_per_ip
def login() -> Response | str:
    if request.method == "GET" and current_user.is_authenticated:
        return redirect(url_for("devices.index"))  # type: ignore[return-value]
    form = EmailForm()
    if form.validate_on_submit():
        try:
            challenge = signin.request_code(
                db(),
                services().hasher,
                form.email.data or "",
                now=now(),
                origin=origin(),
                product=current_app.config["PRODUCT_NAME"],
            )
        except ValidationError as error:
            form.email.errors = [*form.email.errors, error.message]
        else:
            session["signin"] = {
                "challenge": challenge.id,
                "email": challenge.email,
                "next": safe_next(request.args.get("next")),
            }
            return redirect(url_for("auth.code"))  # type: ignore[return-value]
    reason = request.args.get("reason", "")
    return render_template(
        "auth/login.html", form=form, notice=END_MESSAGES.get(reason), reason=reason
    )


@bp.route("/login/code", methods=["GET", "POST"])
def code() -> Response | str:
    flow = session.get("signin")
    if not flow:
        return redirect(url_for("auth.login"))  # type: ignore[return-value]
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
                device_cookie=request.cookies.get(DEVICE_COOKIE),
                trust_device=bool(form.trust_device.data),
                end_session_id=form.end_session.data or None,
            )
        except SessionLimitReached as error:
            # deny mode: the code was right but not used up; the person picks a session
            # to end (the same code comes back with it) or cancels.
            problem = None
            if request.form.get("choosing"):
                problem = (
                    "That session has ended already. Choose another one."
                    if form.end_session.data
                    else "Choose the session to end."
                )
            page = render_template(
                "auth/limit.html",
                form=form,
                sessions=error.details["sessions"],
                devices=error.details.get("devices", {}),
                also_ends=error.details.get("also_ends", 0),
                message=error.message,
                problem=problem,
            )
            return page, 409  # type: ignore[return-value]
        except ChallengeLocked as error:
            form.code.errors = [*form.code.errors, error.message]
            return render_template(
                "auth/code.html", form=form, email=flow["email"], locked=True, resend=ActionForm()
            )
        except InvalidCode as error:
            form.code.errors = [*form.code.errors, error.message]
        else:
            session.clear()  # nothing from before sign-in carries over, CSRF token included
            if form.end_session.data and result.replaced is not None:
                flash("Signed in. The session you chose was ended.")
            elif result.evicted:
                flash(
                    "Signed in. You were at your organisation's limit of "
                    f"{result.tenant.max_sessions_per_user} sessions, so your least recently "
                    "active one was signed out."
                )
            token = services().keys.sign(
                user_id=result.user.id,
                tenant_id=result.tenant.id,
                session_id=result.session.id,
                now=now(),
                expires_at=result.session.absolute_deadline,
            )
            response = redirect(flow.get("next") or url_for("devices.index"))
            set_session_cookie(response, token, result.session.absolute_deadline)  # type: ignore[arg-type]
            if result.device_cookie:
                set_device_cookie(response, result.device_cookie)  # type: ignore[arg-type]
            return response  # type: ignore[return-value]
    return render_template(
        "auth/code.html", form=form, email=flow["email"], locked=False, resend=ActionForm()
    )


@bp.post("/login/cancel")
def cancel() -> Response:
    """Give up a sign-in in progress (from the choose-a-session page): nothing changes on
    the person's other devices and the code can no longer be used from this browser."""
    session.pop("signin", None)
    flash("Sign-in cancelled. Nothing changed on your other devices.")
    return redirect(url_for("auth.login"))  # type: ignore[return-value]


@bp.post("/login/resend")
@codes_per_email
@codes_per_ip
def resend() -> Response:
    flow = session.get("signin")
    form = ActionForm()
    if not flow or not form.validate_on_submit():
        return redirect(url_for("auth.login"))  # type: ignore[return-value]
    challenge = signin.request_code(
        db(),
        services().hasher,
        flow["email"],
        now=now(),
        origin=origin(),
        product=current_app.config["PRODUCT_NAME"],
    )
    session["signin"] = {**flow, "challenge": challenge.id}
    flash("We sent a new code. Earlier codes no longer work.")
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
    """Confirm it is you with a fresh code (admin work needs a recent sign-in). The
    current session stays; only its sign-in time moves."""
    me = current()
    flow = session.get("reauth")
    next_url = safe_next(request.args.get("next")) or (flow or {}).get("next")
    form = CodeForm()
    send = ActionForm(prefix="send")
    if request.method == "POST" and "send-csrf_token" in request.form and send.validate_on_submit():
        challenge = signin.request_code(
            db(),
            services().hasher,
            me.user.email,
            now=now(),
            origin=origin(),
            product=current_app.config["PRODUCT_NAME"],
        )
        session["reauth"] = {"challenge": challenge.id, "next": next_url}
        return redirect(url_for("auth.again"))  # type: ignore[return-value]
    if flow and form.validate_on_submit():
        try:
            signin.reauthenticate(
                db(),
                services().hasher,
                me,
                flow["challenge"],
                form.code.data or "",
                now=now(),
                origin=origin(),
            )
        except (InvalidCode, ChallengeLocked) as error:
            form.code.errors = [*form.code.errors, error.message]
        else:
            session.pop("reauth", None)
            return redirect(flow.get("next") or url_for("devices.index"))  # type: ignore[return-value]
    return render_template(
        "auth/again.html", form=form, send=send, sent=bool(flow), email=me.user.email
    )
