"""Calling the core the way a request does, for tests of the core's rules."""

from __future__ import annotations

from app.clock import FrozenClock
from app.core import session_check
from app.core.sessions import Current
from app.db import scope_to_tenant
from app.services import Services


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
