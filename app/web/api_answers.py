"""The JSON API's answers to a finished sign-in, shared by every way in (an emailed code
in app.web.api, a passkey in app.web.passkeys): 201 with the new session and its token,
or 409 with the sessions to choose from in deny mode at the session limit."""

from __future__ import annotations

from flask import Response, jsonify

from app.core import signin
from app.core.errors import SessionLimitReached
from app.models import Device
from app.web import api_shapes as shapes
from app.web.cookies import set_device_cookie
from app.web.unit_of_work import db, now, services


def limit_answer(error: SessionLimitReached) -> tuple[Response, int]:
    """409 session_limit_reached with the live sessions (SessionLimitError)."""
    devices = {s.device_id: db().get_one(Device, s.device_id) for s in error.details["sessions"]}
    return jsonify(shapes.session_limit_error(error, devices)), error.status


def signed_in(result: signin.SignIn, *, cookie_wanted: bool) -> Response:
    """201 with the new session, its token and its device (and ``deviceId`` when a new
    one was made; a browser also gets it as its device cookie when it sent none)."""
    token = services().keys.sign(
        user_id=result.user.id,
        tenant_id=result.tenant.id,
        session_id=result.session.id,
        now=now(),
        expires_at=result.session.absolute_deadline,
    )
    response = jsonify(shapes.signed_in(result, token))
    response.status_code = 201
    if result.device_cookie and cookie_wanted:
        set_device_cookie(response, result.device_cookie)
    return response


def session_length(expires_in: int | None) -> int | None:
    """The ``expiresIn`` a client asked for, capped at LONGEST_SESSION (longer means "as
    long as the policy allows"); None when it asked for nothing."""
    return None if expires_in is None else min(expires_in, shapes.LONGEST_SESSION)
