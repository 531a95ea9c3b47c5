"""Calling the core the way a request does, for tests of the core's rules: each call in
its own write session, committed like a request."""

from __future__ import annotations

from typing import Any

from app.clock import FrozenClock
from app.core import codes, session_check, signin
from app.core.events import Origin
from app.core.sessions import Current
from app.core.signin import SignIn
from app.db import scope_to_tenant
from app.services import Services
from testkit.mail import Mailbox


def ask(services: Services, clock: FrozenClock, email: str, *, origin: Origin) -> str:
    """Request a sign-in code for ``email`` (the core mails it); the challenge id. Raises
    what codes.request_code raises (ValidationError, a budget's TooManyAttempts...)."""
    with services.session(write=True) as db:
        challenge = codes.request_code(
            db, services.hasher, email, now=clock.now(), origin=origin, budgets=services.budgets
        )
        db.commit()
        return challenge.id


def enter(
    services: Services,
    clock: FrozenClock,
    challenge_id: str,
    code: str,
    *,
    origin: Origin,
    **options: Any,
) -> SignIn:
    """Answer the challenge with ``code`` (``options`` go to signin.sign_in). Committed even
    when it raises: a HoldfastError leaves consistent state meant to be kept (a failed
    attempt counted, a challenge locked)."""
    with services.session(write=True) as db:
        try:
            return signin.sign_in(
                db,
                services.hasher,
                challenge_id,
                code,
                now=clock.now(),
                origin=origin,
                budgets=services.budgets,
                **options,
            )
        finally:
            db.commit()


def start_session(
    services: Services,
    clock: FrozenClock,
    mailbox: Mailbox,
    email: str,
    *,
    origin: Origin,
    **options: Any,
) -> tuple[SignIn, str]:
    """Sign ``email`` in through the core with the real code from the real mailbox; the
    sign-in and a token for its session."""
    before = mailbox.count(email)
    challenge_id = ask(services, clock, email, origin=origin)
    result = enter(
        services,
        clock,
        challenge_id,
        mailbox.last_code(email, before + 1),
        origin=origin,
        **options,
    )
    token = services.keys.sign(
        user_id=result.user.id,
        tenant_id=result.tenant.id,
        session_id=result.session.id,
        now=clock.now(),
        expires_at=result.session.absolute_deadline,
    )
    return result, token


def check(services: Services, clock: FrozenClock, token: str, touch: bool = True) -> Current:
    """One request's session check of ``token``, committed like a request; raises what
    the check raises (InvalidSession, SessionExpired, TokenExpired...)."""
    with services.session(write=True) as db:
        claims = services.keys.verify(token, clock.now())
        scope_to_tenant(db, claims.tenant_id)
        try:
            current = session_check.check_session(db, claims, now=clock.now(), touch=touch)
            assert current.session is not None  # load the objects in the request, as a page does
            return current
        finally:
            db.commit()
