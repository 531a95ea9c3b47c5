"""The person's devices and sessions: list, rename, end one, end all others, trust, stop
trusting, remove a device, and the session status the page polls."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from flask import Blueprint, Response, flash, g, jsonify, redirect, render_template, url_for
from flask_babel import format_datetime, format_timedelta, get_locale, ngettext
from flask_babel import gettext as _
from flask_login import current_user, login_required
from htmx_flask import make_response as htmx_response

from app.core import sessions, trust
from app.core.errors import InvalidSession, ValidationError
from app.core.policy import describe_duration
from app.core.sessions import END_MESSAGES
from app.models import Device, Tenant
from app.web.authentication import current, origin
from app.web.cookies import set_session_cookie
from app.web.forms import ActionForm, RenameForm
from app.web.htmx import is_htmx
from app.web.i18n import said
from app.web.session_status import live_status
from app.web.templating import device_name
from app.web.unit_of_work import db, now, services

bp = Blueprint("devices", __name__)


def _page(**extra: object) -> str:
    return render_template("devices/index.html", **_lists_context(), **extra)


def _lists_context() -> dict[str, object]:
    """What the device cards need: every device with its live sessions (one card each),
    their labels, the caller, the action form, what trusting this device would give, a
    duration in words, and whether any session but the caller's is live (the "Sign out
    all other sessions" button shows only then)."""
    me = current()
    views = sessions.devices_of(db(), me, now=now())
    return {
        "views": views,
        "labels": _labels(views),
        "me": me,
        "action": ActionForm(),
        "trust_offer": _trust_offer(me.tenant),
        "duration": _duration,
        "others_live": any(s.id != me.session.id for view in views for s in view.sessions),
    }


#: how finely "added …" tells same-named devices apart: the first that does, per name
_ADDED_FORMATS = ("d MMM yyyy", "d MMM yyyy, HH:mm", "d MMM yyyy, HH:mm:ss")


def _labels(views: list[sessions.DeviceView]) -> dict[str, str]:
    """Each listed device's name as the page says it (headings, accessible names,
    confirmations), by device id: its display name (the one the person gave, else
    "Safari on iOS"), told apart from other listed devices of the same name by when it
    was added: "Safari on iOS · added 3 Dec 2026", to the minute or the second when the
    day does not tell them apart (and numbered if even the second does not)."""
    by_name: dict[str, list[Device]] = defaultdict(list)
    for view in views:
        by_name[device_name(view.device)].append(view.device)
    labels = {}
    for name, devices in by_name.items():
        if len(devices) == 1:
            labels[devices[0].id] = name
            continue
        devices.sort(key=lambda d: d.first_seen_at)
        for pattern in _ADDED_FORMATS:
            added = [format_datetime(d.first_seen_at, pattern) for d in devices]
            if len(set(added)) == len(added):
                break
        else:
            added = [f"{when} ({n})" for n, when in enumerate(added, start=1)]
        for device, when in zip(devices, added, strict=True):
            labels[device.id] = _("%(device)s · added %(day)s", device=name, day=when)
    return labels


def _trust_offer(tenant: Tenant) -> str:
    """What "Trust this device" gives under the tenant's policy, in a sentence."""
    idle = tenant.trusted_idle_timeout > tenant.idle_timeout
    life = tenant.trusted_outlives_absolute and tenant.trusted_lifetime > tenant.absolute_lifetime
    words = {
        "idle": _duration(tenant.trusted_idle_timeout),
        "lifetime": _duration(tenant.trusted_lifetime),
    }
    if idle and life:
        return _(
            "Once trusted, this device signs out only after %(idle)s without use, and "
            "%(lifetime)s after sign-in at the latest.",
            **words,
        )
    if idle:
        return _("Once trusted, this device signs out only after %(idle)s without use.", **words)
    if life:
        return _("Trusted, a session on this device may last up to %(lifetime)s.", **words)
    return _(
        "Trust marks this device as yours for %(lifetime)s; your organisation gives "
        "trusted devices no longer sessions.",
        **words,
    )


def _duration(seconds: int) -> str:
    """A policy duration in the page's language ("30 days", "30 Tage")."""
    if str(get_locale() or "en") == "en":
        return describe_duration(seconds)
    return str(format_timedelta(timedelta(seconds=seconds), threshold=1.5))


def _lists(status: int = 200, **extra: object) -> Response:
    """htmx: every device card and the toolbar as they are now, so no part of the page
    is left stale after an action."""
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
            error = said(problem)
    else:
        error = "; ".join(form.name.errors) or _("Could not rename the device.")
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
            day=format_datetime(until, "d MMM y"),
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
            "%(device)s is no longer trusted. Its sessions keep running, now under the "
            "usual limits.",
            device=device_name(device),
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
                "error": _(END_MESSAGES[reason]) if reason in END_MESSAGES else said(error),
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
    # The idle timeout this session runs under (longer on a trusted device): the page's
    # keeper times its warning and its activity pings from it.
    timeout = sessions.idle_timeout(me.facts.tenant, me.facts.device, now())
    return jsonify({**live_status(me), "idleTimeout": int(timeout.total_seconds())})
