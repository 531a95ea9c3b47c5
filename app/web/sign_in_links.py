"""The sign-in link of a code mail (app.core.sign_in_links): ``GET /login/link/<id>/<secret>``.

In the browser that asked for the code, GET shows one button and its POST signs in (or
goes on to the second step, as the code would): a GET never writes (its request runs
without the write transaction), and link scanners that follow every link do not press
buttons. Anywhere else the link only says where it works: other browsers change nothing,
since they do not hold the flow cookie. A fresh sign-in's mail ("Confirm it's you")
carries the same link: in the signed-in browser that asked, its button confirms it is
you, as the code would."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user

from app.core.errors import (
    ChallengeLocked,
    InvalidCode,
    MfaEnrolmentRequired,
    MfaRequired,
    SessionLimitReached,
    TenantChoiceRequired,
)
from app.core.passkey_rules import PasskeyEnrolmentRequired, PasskeyRequired
from app.core.sign_in_links import LinkElsewhere, reauthenticate_with_link, sign_in_with_link
from app.web.auth import _signed_in, pending_step, to_next_step
from app.web.authentication import current, origin
from app.web.cookies import DEVICE_COOKIE
from app.web.forms import ActionForm
from app.web.i18n import said
from app.web.unit_of_work import db, now, services

bp = Blueprint("sign_in_links", __name__)


@bp.route("/login/link/<challenge_id>/<secret>", methods=["GET", "POST"])
def follow(challenge_id: str, secret: str) -> Response | str | tuple[str, int]:
    fresh = session.get("reauth") or {}
    if current_user.is_authenticated and fresh.get("challenge") == challenge_id:
        return _fresh_sign_in(challenge_id, secret, fresh)
    flow = session.get("signin") or {}
    if next_step := pending_step(flow):  # the code was used up: the next step waits
        return redirect(next_step)  # type: ignore[return-value]
    if not flow.get("challenge") or flow["challenge"] != challenge_id:
        elsewhere = LinkElsewhere()
        return render_template("auth/link_elsewhere.html", message=said(elsewhere)), 409
    form = ActionForm()
    if not form.validate_on_submit():
        return render_template("auth/link.html", form=form, email=flow.get("email"))
    try:
        result = sign_in_with_link(
            db(),
            services().hasher,
            challenge_id[:64],
            secret[:64],
            flow_challenge_id=flow.get("challenge"),
            now=now(),
            origin=origin(),
            device_cookie=request.cookies.get(DEVICE_COOKIE),
            budgets=services().budgets,
        )
    except LinkElsewhere as error:
        return render_template("auth/link_elsewhere.html", message=said(error)), error.status
    except (MfaRequired, MfaEnrolmentRequired, PasskeyEnrolmentRequired) as error:
        return to_next_step(flow, error)
    except (TenantChoiceRequired, SessionLimitReached):
        # Choices are made on the code page: the code is not used up.
        flash(_("Type the code from the email to choose how to go on."))
        return redirect(url_for("auth.code"))  # type: ignore[return-value]
    except (InvalidCode, ChallengeLocked, PasskeyRequired) as error:
        flash(said(error))
        return redirect(url_for("auth.code"))  # type: ignore[return-value]
    return _signed_in(result, flow)


def _fresh_sign_in(
    challenge_id: str, secret: str, flow: dict[str, Any]
) -> Response | str | tuple[str, int]:
    """The link of a fresh sign-in's mail, in the signed-in browser that asked for it:
    the same one button, then the session's sign-in time moves to now (or, for a person
    with an app, its code is asked for next)."""
    me = current()
    form = ActionForm()
    if not form.validate_on_submit():
        return render_template("auth/link.html", form=form, email=me.user.email, fresh=True)
    try:
        reauthenticate_with_link(
            db(),
            services().hasher,
            me,
            challenge_id[:64],
            secret[:64],
            flow_challenge_id=flow.get("challenge"),
            now=now(),
            origin=origin(),
            device_cookie=request.cookies.get(DEVICE_COOKIE),
            budgets=services().budgets,
        )
    except MfaRequired as error:
        session["reauth"] = {**flow, "mfa": error.details["step"].id}
        return redirect(url_for("auth.again_mfa"))  # type: ignore[return-value]
    except (InvalidCode, ChallengeLocked) as error:
        flash(said(error))
        return redirect(url_for("auth.again", next=flow.get("next")))  # type: ignore[return-value]
    session.pop("reauth", None)
    return redirect(flow.get("next") or url_for("devices.index"))  # type: ignore[return-value]
