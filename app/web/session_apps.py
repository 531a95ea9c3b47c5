"""The apps each session is signed into, on the person's device cards: listed by the
self-contained partial ``partials/_session_apps.html`` (through the template global
``session_apps``), and signed out of one at a time. Ending the session itself (the
card's own button) signs every app on it out."""

from __future__ import annotations

from flask import Blueprint, Response, redirect, url_for
from flask_login import login_required

from app.core import backchannel
from app.core.backchannel import SignedInApp
from app.web.authentication import current, origin
from app.web.forms import ActionForm
from app.web.unit_of_work import db, now

bp = Blueprint("session_apps", __name__)


@bp.app_template_global("session_apps")
def session_apps(session_id: str) -> list[SignedInApp]:
    """The apps signed in through one of the person's sessions (for the device card)."""
    return backchannel.apps_of_session(db(), session_id)


@bp.post("/sessions/apps/<grant_id>/end")
@login_required
def sign_out_of_app(grant_id: str) -> Response:
    """Sign out of one app on one session (the app gets its back-channel logout)."""
    if ActionForm().validate_on_submit():
        me = current()
        backchannel.sign_out_of_app(
            db(), me.user.id, grant_id, now=now(), actor_id=me.user.id, origin=origin()
        )
    return redirect(url_for("devices.index"))  # type: ignore[return-value]
