"""One transaction per request: the request's database session and clock reading, made
on first use, and one commit after the view returned.

Views and the core only flush; :func:`_commit` commits once after the view returned (a
:class:`~app.core.errors.HoldfastError` answer commits too, see app.core), and an
unexpected error rolls back. A commit that fails answers 503, never a success. A request
that opened no transaction (a validation that wrote nothing) has nothing to commit. The
one write outside it: a read-only request's throttled touch of its session is one
autocommit statement, kept even if the view then fails (the activity happened; see
app.db.rows_changed).
"""

from __future__ import annotations

import logging
from datetime import datetime

from flask import Flask, Response, current_app, g, request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.db import SessionOnDemand
from app.internals import RequestGlobals, current_globals
from app.sealing import Unsealable
from app.services import Services
from app.web.errors import secrets_unavailable, unavailable

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def services() -> Services:
    return current_app.extensions["holdfast"]


def db() -> Session:
    """The request's database session (made on first use)."""
    return unit_of(current_globals(), request.method)()


def writing_unit() -> None:
    """Make the request's unit of work take the write lock from its start, as a POST's
    does, for a GET that writes (OIDC's authorize stores its code): on SQLite a write
    committed by another connection meanwhile would otherwise make the upgrade from a
    read fail at once ("database is locked"). Does nothing once the unit exists."""
    unit_of(current_globals(), "POST")


def unit_of(store: RequestGlobals, method: str, found: Services | None = None) -> SessionOnDemand:
    """The request's database session, made when something first needs it: the hot path
    reads and touches without one (app.db.SessionOnDemand). ``store`` is the request's
    ``g`` (the object, not the proxy) and ``found`` its services, for a caller that
    already looked them up (app.web.authentication)."""
    unit: SessionOnDemand | None = store.get("db")
    if unit is None:
        found = found or services()
        write = method not in SAFE_METHODS
        unit = store.db = SessionOnDemand(found.database, write=write, make=found.session)
    return unit


def now() -> datetime:
    """The request's moment: read once, so every rule in a request agrees."""
    return now_of(current_globals())


def now_of(store: RequestGlobals, found: Services | None = None) -> datetime:
    """:func:`now`, for a caller that already holds the request's ``g`` (and services)."""
    moment: datetime | None = store.get("now")
    if moment is None:
        moment = store.now = (found or services()).clock.now()
    return moment


def init_app(app: Flask) -> None:
    app.after_request(_commit)
    app.teardown_request(_close)


def _commit(response: Response) -> Response:
    session = _made()
    if session is not None and session.in_transaction() and not g.get("rollback"):
        try:
            session.commit()
        except SQLAlchemyError:
            log.exception("commit failed")
            # Detach what the request read before rolling back: a rollback expires it, and
            # the access log reading the session's id afterwards would then try the dead
            # connection again and turn this 503 into a 500 (tests/test_pg_restart.py).
            session.expunge_all()
            session.rollback()
            response = unavailable()
        except Unsealable as error:  # a pseudonym key sealed with a key that is gone
            session.expunge_all()
            session.rollback()
            response = secrets_unavailable(error)
    return response


def _close(_error: BaseException | None) -> None:
    unit: SessionOnDemand | None = g.pop("db", None)
    session = None if unit is None else unit.made
    if session is not None and (session.in_transaction() or session.identity_map):
        session.close()  # one that never read or wrote holds nothing to release


def _made() -> Session | None:
    """The request's database session, if something made it."""
    unit: SessionOnDemand | None = g.get("db")
    return None if unit is None else unit.made
