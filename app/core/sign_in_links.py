"""The sign-in link mailed beside every sign-in code (as Clerk's and Kratos' "magic links"):
one click signs in the browser that asked for the code.

* The link names the code's challenge and carries its own 192-bit secret (only a keyed
  hash is stored, ``challenges.link_hash``; app.core.codes makes it). It has the code's
  expiry and is used up with it: the link, the code, whichever comes first, once.
* **Bound to the browser that asked.** That browser's flow cookie (Flask's signed session,
  ``holdfast_flow``) holds the challenge id since it asked for the code. Opened anywhere
  else (another browser, a phone's mail app, a mail scanner following links), the link
  does nothing but say so, and stays usable where it belongs: someone who gets hold of
  the mail cannot sign in with the link from their own browser.
* **A fresh sign-in's mail** (app.core.reauth: "Confirm it's you") carries the same kind
  of link, bound the same way to the browser that asked (its flow cookie holds the fresh
  sign-in's challenge, and that browser must still be signed in to the same session):
  :func:`reauthenticate_with_link`.
* Everything after the check is a code sign-in's (app.core.signin.sign_in with the
  link in place of the code): the slow-down, the second factor where one is needed, the
  passkey policy, the session limit; the session's ``sign_in_method`` is ``link``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from app.core import reauth, signin
from app.core.budgets import CodeBudgets
from app.core.errors import N_, HoldfastError
from app.core.events import Origin
from app.core.sessions import Current
from app.crypto import Hasher
from app.models import UserSession


class LinkElsewhere(HoldfastError):
    """The link was opened in a browser other than the one that asked for the code."""

    code, status, message = (
        "link_elsewhere",
        409,
        N_(
            "This sign-in link works only in the browser where the code was asked for. Open "
            "it there, or type the 6-digit code from the same email."
        ),
    )


def _require_asking_browser(challenge_id: str, flow_challenge_id: str | None) -> None:
    """Raises LinkElsewhere unless this browser's flow asked for ``challenge_id``'s
    mail (nothing is used up: the link still works in the browser that asked)."""
    if (
        not isinstance(challenge_id, str)
        or not flow_challenge_id
        or flow_challenge_id != challenge_id
    ):
        raise LinkElsewhere()


def sign_in_with_link(
    db: Session,
    hasher: Hasher,
    challenge_id: str,
    secret: str,
    *,
    flow_challenge_id: str | None,
    now: datetime,
    origin: Origin,
    device_cookie: str | None,
    budgets: CodeBudgets,
    trust_device: bool = False,
) -> signin.SignIn:
    """Sign in with the link of ``challenge_id`` in the browser whose flow holds
    ``flow_challenge_id``. Raises LinkElsewhere (another browser: nothing used up), and
    otherwise as app.core.signin.sign_in (InvalidCode for a wrong, used or expired link;
    MfaRequired, TenantChoiceRequired, SessionLimitReached, PasskeyRequired...)."""
    _require_asking_browser(challenge_id, flow_challenge_id)
    return signin.sign_in(
        db,
        hasher,
        challenge_id,
        "",
        now=now,
        origin=origin,
        device_cookie=device_cookie,
        trust_device=trust_device,
        budgets=budgets,
        link_secret=secret,
    )


def reauthenticate_with_link(
    db: Session,
    hasher: Hasher,
    current: Current,
    challenge_id: str,
    secret: str,
    *,
    flow_challenge_id: str | None,
    now: datetime,
    origin: Origin,
    device_cookie: str | None,
    budgets: CodeBudgets,
) -> UserSession:
    """A fresh sign-in of ``current`` with the link of ``challenge_id``, in the browser
    whose flow holds ``flow_challenge_id``. Raises LinkElsewhere (another browser: nothing
    used up), and otherwise as app.core.reauth.reauthenticate (InvalidCode for a wrong,
    used or expired link; MfaRequired for a person with an app)."""
    _require_asking_browser(challenge_id, flow_challenge_id)
    return reauth.reauthenticate(
        db,
        hasher,
        current,
        challenge_id,
        "",
        now=now,
        origin=origin,
        device_cookie=device_cookie,
        budgets=budgets,
        link_secret=secret,
    )
