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
* The hot path reads its one row with :func:`first_row`: a :class:`PlainQuery` compiled
  once, run on a DBAPI connection of its own in autocommit mode
  (:class:`PlainConnections`), so a validation costs one statement and no BEGIN/COMMIT,
  no ORM objects and no pool pre-ping round trip.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from typing import Any

from sqlalchemy import Engine, Select, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
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
        #: the connections :func:`first_row` reads on
        self.plain = PlainConnections(
            url, keep=10, **{k: v for k, v in options.items() if k != "pool_pre_ping"}
        )
        if self.is_sqlite:
            _configure_sqlite(self.engine, busy_timeout)
            _configure_sqlite(self.plain.engine, busy_timeout, begin=False)
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
        db.info["database"] = self
        return db

    def dispose(self) -> None:
        self.engine.dispose()
        self.plain.close()
        self.plain.engine.dispose()


class PlainQuery:
    """A SELECT the hot path runs on every request, compiled once per database dialect and
    read as one plain tuple with each column's own result processing (UTC datetimes,
    booleans). Its parameters are passed to the driver as they are, so they must be of
    types that need no conversion (strings, integers): checked when it is compiled."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None, list[tuple[int, Any]]]] = {}

    def compiled(
        self, dialect: Dialect
    ) -> tuple[str, tuple[str, ...] | None, list[tuple[int, Any]]]:
        """(SQL, parameter order for positional drivers or None, (column index, result
        processor) for the columns that have one)."""
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            for name, bind in compiled.binds.items():
                if bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
                    raise TypeError(f"parameter {name!r} needs conversion; use an ORM query")
            order = tuple(compiled.positiontup or ()) if compiled.positional else None
            processors = [
                (index, process)
                for index, column in enumerate(self.statement.selected_columns)
                if (process := column.type.dialect_impl(dialect).result_processor(dialect, None))
            ]
            found = self._compiled[dialect.name] = (str(compiled), order, processors)
        return found


def first_row(db: Session, query: PlainQuery, **params: Any) -> tuple[Any, ...] | None:
    """The first row of ``query``, or None.

    With no transaction open on ``db`` (and nothing waiting in it to be flushed) it is
    read on one of the database's :class:`PlainConnections` (see the module docstring);
    otherwise through ``db``, so it sees what the transaction wrote. Errors come as SQLAlchemy's
    (a lost database is an OperationalError, answered 503 by the web layer)."""
    database: Database | None = db.info.get("database")
    if database is None or db.in_transaction() or db.new or db.dirty or db.deleted:
        return db.execute(query.statement, params).first()  # type: ignore[return-value]
    plain = database.plain
    sql, order, processors = query.compiled(plain.dialect)
    args: Any = params if order is None else tuple(params[name] for name in order)
    row = plain.fetch_one(sql, args)
    if row is None:
        return None
    values = list(row)
    for index, process in processors:
        if values[index] is not None:
            values[index] = process(values[index])
    return tuple(values)


class PlainConnections:
    """Autocommit DBAPI connections for :func:`first_row`, kept on a stack.

    Taking one and giving it back are list operations: SQLAlchemy's pool costs about
    15 µs a checkout, a tenth of a whole validation. Each connection is made by an engine
    in ``AUTOCOMMIT`` mode (so its connect-time set-up runs, and a read is one statement
    with no BEGIN/COMMIT) and then detached from that engine's pool. There is one
    connection per thread reading at the same moment, and at most ``keep`` idle ones.
    There is no pre-ping: a read that finds its connection lost (the server restarted)
    closes every idle connection, which are as dead, and is tried once more on a new one.
    A forked worker never uses its parent's connections."""

    def __init__(self, url: str, *, keep: int, **options: Any) -> None:
        self.engine = create_engine(url, isolation_level="AUTOCOMMIT", **options)
        self.dialect = self.engine.dialect
        self.keep = keep
        self._error: Any = self.dialect.loaded_dbapi.Error  # the driver's base class
        self._idle: deque[Any] = deque()  # DBAPI connections
        self._pid = os.getpid()

    def fetch_one(self, sql: str, args: Any) -> Any:
        for attempt in (1, 2):
            try:
                connection = self._take()
            except self._error as error:
                raise DBAPIError.instance(sql, args, error, self._error) from error
            cursor = None
            try:
                cursor = connection.cursor()
                cursor.execute(sql, args)
                row = cursor.fetchone()
                cursor.close()
            except self._error as error:
                lost = self.dialect.is_disconnect(error, connection, cursor)
                _close_quietly(connection)
                if lost:
                    self.close()
                    if attempt == 1:
                        continue
                raise DBAPIError.instance(
                    sql, args, error, self._error, connection_invalidated=lost
                ) from error
            if len(self._idle) < self.keep:
                self._idle.append(connection)
            else:
                _close_quietly(connection)
            return row
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def idle(self) -> int:
        """How many connections wait for the next read."""
        return len(self._idle)

    def close(self) -> None:
        """Close the idle connections (the ones in use close when given back)."""
        if self._forked():
            return
        while True:
            try:
                connection = self._idle.pop()
            except IndexError:
                return
            _close_quietly(connection)

    def _forked(self) -> bool:
        """In a forked child, forget the parent's connections (never use or close them:
        their sockets are the parent's). True if that just happened."""
        if self._pid == os.getpid():
            return False
        self._idle = deque()
        self._pid = os.getpid()
        return True

    def _take(self) -> Any:
        self._forked()
        try:
            return self._idle.pop()
        except IndexError:
            made = self.engine.raw_connection()  # runs the engine's connect-time set-up
            made.detach()  # ours from now on: the engine's pool forgets it
            return made.dbapi_connection


def _close_quietly(connection: Any) -> None:
    try:
        connection.close()
    except Exception:
        log.debug("closing a plain connection failed", exc_info=True)


def _configure_sqlite(engine: Engine, busy_timeout: float, *, begin: bool = True) -> None:
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

    if not begin:
        return

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
