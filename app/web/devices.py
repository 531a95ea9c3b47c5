"""The person's devices and sessions: list, rename, end one, end all others, status."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, redirect, render_template, url_for
from flask_login import current_user, login_required
from htmx_flask import make_response as htmx_response

from app.core import sessions
from app.core.errors import InvalidSession, ValidationError
from app.core.sessions import END_MESSAGES
from app.web.context import current, db, now, origin
from app.web.forms import ActionForm, RenameForm
from app.web.htmx import is_htmx

bp = Blueprint("devices", __name__)


def _page(**extra: object) -> str:
    views = sessions.devices_of(db(), current(), now=now())
    return render_template(
        "devices/index.html", views=views, me=current(), action=ActionForm(), **extra
    )


@bp.get("/devices")
@login_required
def index() -> str:
    return _page()


def _device_fragment(device_id: str) -> str:
    """The device's card as it is now; empty when it has nothing left to show."""
    view = next(
        (v for v in sessions.devices_of(db(), current(), now=now()) if v.device.id == device_id),
        None,
    )
    if view is None:
        return ""
    return render_template("partials/_device.html", view=view, me=current(), action=ActionForm())


@bp.post("/sessions/<session_id>/end")
@login_required
def end_one(session_id: str) -> Response | str:
    me = current()
    ended = sessions.end_own_session(db(), me, session_id, now=now(), origin=origin())
    if ended.id == me.session.id:
        target = url_for("auth.login", reason="logout")
        if is_htmx():
            return htmx_response(redirect=target)  # type: ignore[no-any-return]
        return redirect(target)  # type: ignore[return-value]
    if is_htmx():
        return _device_fragment(ended.device_id)
    return redirect(url_for("devices.index"))  # type: ignore[return-value]


@bp.post("/sessions/end-others")
@login_required
def end_others() -> Response | str:
    ended = sessions.end_other_sessions(db(), current(), now=now(), origin=origin())
    if is_htmx():
        views = sessions.devices_of(db(), current(), now=now())
        return render_template(
            "partials/_devices.html",
            views=views,
            me=current(),
            action=ActionForm(),
            ended=len(ended),
        )
    return redirect(url_for("devices.index"))  # type: ignore[return-value]


@bp.post("/devices/<device_id>/name")
@login_required
def rename(device_id: str) -> Response | str:
    form = RenameForm()
    error = None
    if form.validate_on_submit():
        try:
            sessions.rename_device(
                db(), current(), device_id, form.name.data or "", now=now(), origin=origin()
            )
        except ValidationError as problem:
            error = problem.message
    else:
        error = "; ".join(form.name.errors) or "Could not rename the device."
    if is_htmx():
        fragment = _device_fragment(device_id)
        if error:
            return Response(fragment, status=422)  # type: ignore[return-value]
        return fragment
    if error:
        return _page(rename_error=error), 422  # type: ignore[return-value]
    return redirect(url_for("devices.index"))  # type: ignore[return-value]


@bp.get("/session/status")
def status() -> Response:
    """Cheap status for the page's own polling; does not count as activity."""
    return _status()


@bp.post("/session/extend")
def extend() -> Response:
    """Activity on the page: the hot path has moved the idle deadline (throttled)."""
    return _status()


def _status() -> Response:
    if not current_user.is_authenticated:
        error = g.get("auth_error") or InvalidSession("Sign in to continue", reason="signed_out")
        reason = error.details.get("reason", "signed_out")
        response = jsonify(
            {
                "valid": False,
                "error": END_MESSAGES.get(reason, error.message),
                "code": error.code,
                "reason": reason,
                "loginUrl": url_for(
                    "auth.login", reason=reason if reason in END_MESSAGES else None
                ),
            }
        )
        response.status_code = 401
        return response
    me = current()
    moment = now()
    return jsonify(
        {
            "valid": True,
            "sessionId": me.session.id,
            "expiresAt": me.expires_at.isoformat().replace("+00:00", "Z"),
            "expiresIn": max(0, int((me.expires_at - moment).total_seconds())),
            "idleTimeout": me.tenant.idle_timeout,
            "deviceCount": sessions.device_count(db(), me.user.id, moment),
        }
    )
