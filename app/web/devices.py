"""The person's devices and sessions: list, rename, end one, end all others, trust, stop
trusting, remove a device, and the session status the page polls."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response, flash, g, jsonify, redirect, render_template, url_for
from flask_babel import format_timedelta, get_locale, ngettext
from flask_babel import gettext as _
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
    return render_template("devices/index.html", **_lists_context(), **extra)


def _lists_context() -> dict[str, object]:
    """What the device lists need: every device with its live sessions, the caller, the
    action form, the trusted lifetime in words, and whether any session but the
    caller's is live (the "Sign out all other sessions" button shows only then)."""
    me = current()
    views = sessions.devices_of(db(), me, now=now())
    return {
        "views": views,
        "me": me,
        "action": ActionForm(),
        "trusted_for": _duration(me.tenant.trusted_lifetime),
        "others_live": any(s.id != me.session.id for view in views for s in view.sessions),
    }


def _duration(seconds: int) -> str:
    """A policy duration in the page's language ("30 days", "30 Tage")."""
    if str(get_locale() or "en") == "en":
        return describe_duration(seconds)
    return str(format_timedelta(timedelta(seconds=seconds), threshold=1.5))


def _lists(status: int = 200, **extra: object) -> Response:
    """htmx: both device lists and the toolbar as they are now, so no part of the page
    is left stale after an action (a trusted device's "signed in" included)."""
    body = render_template("partials/_device_lists.html", **_lists_context(), **extra)
    return Response(body, status=status)


@bp.get("/devices")
@login_required
def index() -> str:
    return _page()


@bp.post("/sessions/<session_id>/end")
@login_required
def end_one(session_id: str) -> Response:
    me = current()
    ended = sessions.end_own_session(db(), me, session_id, now=now(), origin=origin())
    if ended.id == me.session.id:
        target = url_for("auth.login", reason="logout")
        if is_htmx():
            return htmx_response(redirect=target)  # type: ignore[no-any-return]
        return redirect(target)  # type: ignore[return-value]
    if is_htmx():
        return _lists()
    return redirect(url_for("devices.index"))  # type: ignore[return-value]


@bp.post("/sessions/end-others")
@login_required
def end_others() -> Response:
    ended = sessions.end_other_sessions(db(), current(), now=now(), origin=origin())
    count = len(ended)
    notice = ngettext("Ended %(num)d other session.", "Ended %(num)d other sessions.", count)
    if is_htmx():
        return _lists(notice=notice)
    flash(notice)
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
        # 422 is swapped (base.html's htmx-config): the card says what was wrong.
        if error:
            return _lists(status=422, rename_error=error, rename_device=device_id)
        return _lists()
    if error:
        return _page(rename_error=error), 422  # type: ignore[return-value]
    return redirect(url_for("devices.index"))  # type: ignore[return-value]


def _after_trust_change(notice: str) -> Response:
    """htmx: the device lists as they are now, with the notice; otherwise back to the
    page with the notice flashed."""
    if is_htmx():
        return _lists(notice=notice)
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
        _(
            "This device is trusted until %(day)s. You stay signed in here longer.",
            day=f"{until.day} {until:%b %Y}",
        )
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
        _(
            "%(device)s is no longer trusted. Its sessions keep running for now.",
            device=device.display_name,
        )
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
        ngettext(
            "Device removed: %(num)d session ended, trust ended.",
            "Device removed: %(num)d sessions ended, trust ended.",
            count,
        )
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
