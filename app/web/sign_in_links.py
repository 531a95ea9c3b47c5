"""The sign-in link of a code mail (app.core.sign_in_links): ``GET /login/link/<id>/<secret>``.

In the browser that asked for the code, GET shows one button and its POST signs in (or
goes on to the second step, as the code would): a GET never writes (its request runs
without the write transaction), and link scanners that follow every link do not press
buttons. Anywhere else the link only says where it works: other browsers change nothing,
since they do not hold the flow cookie."""

from __future__ import annotations

from flask import Blueprint, Response, flash, redirect, render_template, request, session, url_for

from app.core.errors import (
    ChallengeLocked,
    InvalidCode,
    MfaEnrolmentRequired,
    MfaRequired,
    SessionLimitReached,
    TenantChoiceRequired,
)
from app.core.passkey_rules import PasskeyEnrolmentRequired, PasskeyRequired
from app.core.sign_in_links import LinkElsewhere, sign_in_with_link
from app.web.auth import _signed_in, pending_step, to_next_step
from app.web.authentication import origin
from app.web.cookies import DEVICE_COOKIE
from app.web.forms import ActionForm
from app.web.i18n import said
from app.web.unit_of_work import db, now, services

bp = Blueprint("sign_in_links", __name__)


@bp.route("/login/link/<challenge_id>/<secret>", methods=["GET", "POST"])
def follow(challenge_id: str, secret: str) -> Response | str | tuple[str, int]:
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
        flash("Type the code from the email to choose how to go on.")
        return redirect(url_for("auth.code"))  # type: ignore[return-value]
    except (InvalidCode, ChallengeLocked, PasskeyRequired) as error:
        flash(said(error))
        return redirect(url_for("auth.code"))  # type: ignore[return-value]
    return _signed_in(result, flow)
