"""Engine and session set-up, tenant scoping, and the after-commit outbox.

* SQLite runs in WAL mode with a busy timeout. Transactions that will write begin with
  ``BEGIN IMMEDIATE`` (they take the write lock up front, so two sign-ins can never both
  read "2 live sessions" and both add a third); read transactions begin deferred.
* Every ORM query on a session whose ``info["tenant_id"]`` is set sees only that tenant's
  rows (SQLAlchemy's ``with_loader_criteria`` on the :class:`TenantScoped` mixin). The few
  cross-tenant reads (sign-in by email, the CLI) say so with
  ``execution_options(all_tenants=True)`` or run on an unscoped session.
* Mail queued by the core with :func:`queue_mail` is sent only after the transaction
  commits, so nobody receives a code for a challenge that was rolled back.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker, with_loader_criteria

from app.mail import Message
from app.models import TenantScoped

log = logging.getLogger(__name__)


class Database:
    def __init__(self, url: str, *, echo: bool = False, busy_timeout: float = 30.0) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        options: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            options["connect_args"] = {"timeout": busy_timeout, "check_same_thread": False}
        else:
            options["pool_pre_ping"] = True
            options["pool_size"] = 10
            options["max_overflow"] = 10
        self.engine: Engine = create_engine(url, **options)
        if self.is_sqlite:
            _configure_sqlite(self.engine, busy_timeout)
        self._readers = sessionmaker(self.engine, expire_on_commit=False)
        self._writers = sessionmaker(
            self.engine.execution_options(holdfast_write=True), expire_on_commit=False
        )
        for maker in (self._readers, self._writers):
            event.listen(maker, "do_orm_execute", _limit_to_tenant)
            event.listen(maker, "after_commit", _send_outbox)
            event.listen(maker, "after_rollback", _drop_outbox)

    def session(self, *, write: bool = False, mailer: Any = None) -> Session:
        """A new ORM session. ``write=True`` takes SQLite's write lock at the first query."""
        db = (self._writers if write else self._readers)()
        db.info["mailer"] = mailer
        return db

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below choose how each transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("holdfast_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def scope_to_tenant(db: Session, tenant_id: str | None) -> None:
    """From now on, ORM queries on ``db`` see only ``tenant_id``'s rows."""
    db.info["tenant_id"] = tenant_id


def _limit_to_tenant(state: ORMExecuteState) -> None:
    tenant_id = state.session.info.get("tenant_id")
    if tenant_id is None or state.execution_options.get("all_tenants"):
        return
    if state.is_select or state.is_update or state.is_delete:
        state.statement = state.statement.options(
            with_loader_criteria(
                TenantScoped,
                lambda cls: cls.tenant_id == tenant_id,
                include_aliases=True,
            )
        )


def queue_mail(db: Session, message: Message) -> None:
    """Send ``message`` once the current transaction has committed."""
    db.info.setdefault("outbox", []).append(message)


def _send_outbox(db: Session) -> None:
    messages = db.info.pop("outbox", [])
    mailer = db.info.get("mailer")
    for message in messages:
        if mailer is None:
            log.warning("no mailer configured; dropped mail to %s", message.to)
            continue
        try:
            mailer.send(message)
        except Exception:  # a mail server hiccup must not undo a committed sign-in
            log.exception("sending mail to %s failed", message.to)


def _drop_outbox(db: Session) -> None:
    db.info.pop("outbox", None)
