"""The person's devices and sessions: list, rename, end one, end all others, trust, stop
trusting, remove a device, and the session status the page polls."""

from __future__ import annotations

from flask import Blueprint, Response, flash, g, jsonify, redirect, render_template, url_for
from flask_login import current_user, login_required
from htmx_flask import make_response as htmx_response

from app.core import sessions, trust
from app.core.errors import InvalidSession, ValidationError
from app.core.policy import describe_duration
from app.core.sessions import END_MESSAGES
from app.web.authentication import current, origin
from app.web.cookies import set_session_cookie
from app.web.forms import ActionForm, RenameForm
from app.web.htmx import is_htmx
from app.web.session_status import live_status
from app.web.unit_of_work import db, now, services

bp = Blueprint("devices", __name__)


def _page(**extra: object) -> str:
    views = sessions.devices_of(db(), current(), now=now())
    return render_template(
        "devices/index.html",
        views=views,
        me=current(),
        action=ActionForm(),
        trusted_for=describe_duration(current().tenant.trusted_lifetime),
        **extra,
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


def _after_trust_change(notice: str) -> Response:
    """htmx: both device lists as they are now, with the notice; otherwise back to the
    page with the notice flashed."""
    if is_htmx():
        return Response(
            render_template(
                "partials/_device_lists.html",
                views=sessions.devices_of(db(), current(), now=now()),
                me=current(),
                action=ActionForm(),
                trusted_for=describe_duration(current().tenant.trusted_lifetime),
                notice=notice,
            )
        )
    flash(notice)
    return redirect(url_for("devices.index"))  # type: ignore[return-value]


@bp.post("/devices/<device_id>/trust")
@login_required
def trust_this(device_id: str) -> Response:
    """Trust the device in use. Its session now lives as long as a trusted device's may,
    so the session cookie is issued again with the new expiry."""
    me = current()
    device = trust.trust_device(db(), me, device_id, now=now(), origin=origin())
    until = device.trusted_until
    assert until is not None
    response = _after_trust_change(
        f"This device is trusted until {until:%d %b %Y}. You stay signed in here longer."
    )
    deadline = me.session.absolute_deadline
    token = services().keys.sign(
        user_id=me.user.id,
        tenant_id=me.tenant.id,
        session_id=me.session.id,
        now=now(),
        expires_at=deadline,
    )
    set_session_cookie(response, token, deadline)
    return response


@bp.post("/devices/<device_id>/untrust")
@login_required
def stop_trusting(device_id: str) -> Response:
    device = trust.stop_trusting(db(), current(), device_id, now=now(), origin=origin())
    return _after_trust_change(
        f"{device.display_name} is no longer trusted. Its sessions keep running for now."
    )


@bp.post("/devices/<device_id>/remove")
@login_required
def remove(device_id: str) -> Response:
    """End the device's sessions and its trust; removing the device in use signs out."""
    me = current()
    ended = trust.remove_device(db(), me, device_id, now=now(), origin=origin())
    if any(s.id == me.session.id for s in ended):
        target = url_for("auth.login", reason="logout")
        if is_htmx():
            return htmx_response(redirect=target)  # type: ignore[no-any-return]
        return redirect(target)  # type: ignore[return-value]
    count = len(ended)
    return _after_trust_change(
        f"Device removed: {count} session{'' if count == 1 else 's'} ended, trust ended."
    )


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
    return jsonify({**live_status(me), "idleTimeout": me.facts.tenant.idle_timeout})
