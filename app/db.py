"""Engine and session set-up, tenant scoping, and the after-commit outbox.

* SQLite runs in WAL mode with a busy timeout. Transactions that will write begin with
  ``BEGIN IMMEDIATE`` (they take the write lock up front, so two sign-ins can never both
  read "2 live sessions" and both add a third); read transactions begin deferred.
* Every ORM query on a session whose ``info["tenant_id"]`` is set sees only that tenant's
  rows (SQLAlchemy's ``with_loader_criteria`` on the :class:`TenantScoped` mixin). The few
  cross-tenant reads (sign-in by email, the CLI) say so with
  ``execution_options(all_tenants=True)`` or run on an unscoped session.
* Mail queued by the core (app.outbox.queue_mail) is a row of the same transaction; the
  after-commit hook only wakes the process's sender, so nobody receives a code for a
  challenge that was rolled back and no request waits on the mail relay.
* After a commit that recorded audit events, :data:`app.signals.events_committed` is sent
  (the metrics count them), with this Database as sender.
* The hot path reads its one row with :func:`first_row`: a :class:`PlainQuery` compiled
  once, run on a DBAPI connection of its own in autocommit mode
  (:class:`PlainConnections`), so a validation costs one statement and no BEGIN/COMMIT,
  no ORM objects and no pool pre-ping round trip. Its throttled touch is one such
  statement too (:func:`rows_changed`), when the request has no transaction open.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Engine, Select, Update, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker, with_loader_criteria
from sqlalchemy.sql.compiler import SQLCompiler

from app import outbox, signals
from app.internals import SQLITE_COMPILER
from app.models import TenantScoped

log = logging.getLogger(__name__)


class Database:
    def __init__(
        self, url: str, *, echo: bool = False, busy_timeout: float = 30.0, pool_size: int = 10
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        options: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            options["connect_args"] = {"timeout": busy_timeout, "check_same_thread": False}
        else:
            options["pool_pre_ping"] = True
        if ":memory:" not in url:
            # Connections a process keeps, and as many again for a burst.
            options["pool_size"] = options["max_overflow"] = pool_size
        self.engine: Engine = create_engine(url, **options)
        #: the connections :func:`first_row` reads and :func:`rows_changed` writes on
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
            event.listen(maker, "after_commit", self._after_commit)
            event.listen(maker, "after_rollback", _after_rollback)

    def listen(self, name: str, hook: Callable[[Session], None]) -> None:
        """Run ``hook`` on SQLAlchemy's session event ``name`` for every session this
        database makes (the app factory registers the audit trail's hooks)."""
        for maker in (self._readers, self._writers):
            event.listen(maker, name, hook)

    def session(self, *, write: bool = False, outbox: Any = None) -> Session:
        """A new ORM session. ``write=True`` takes SQLite's write lock at the first query;
        ``outbox`` (app.outbox.Outbox) is where its queued mail goes."""
        db = (self._writers if write else self._readers)()
        db.info["outbox"] = outbox
        db.info["database"] = self
        db.info["write"] = write
        return db

    def plain_row(self, query: PlainQuery, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """``query``'s first row, read on a plain connection (see :func:`first_row`)."""
        sql, encode, decode = query.compiled(self.plain.dialect)
        row = self.plain.fetch_one(sql, encode(params))
        return None if row is None else decode(row)

    def plain_change(self, query: PlainQuery, params: dict[str, Any]) -> int:
        """Run ``query`` on a plain connection; rows changed (see :func:`rows_changed`)."""
        sql, encode, _decode = query.compiled(self.plain.dialect)
        return self.plain.change(sql, encode(params))

    def _after_commit(self, db: Session) -> None:
        outbox.after_commit(db)
        committed = db.info.pop("committed_events", None)
        if committed:
            signals.events_committed.send(self, events=committed)

    def dispose(self) -> None:
        self.engine.dispose()
        self.plain.close()
        self.plain.engine.dispose()


class PlainQuery:
    """A statement the hot path runs on every request (the session read) or often (the
    throttled touch), compiled once per database driver. Parameters go through each
    one's bind processing (UTC datetimes); a SELECT's row comes back as one plain tuple
    with each column's result processing (UTC datetimes, booleans).

    Plain statements are not tenant-scoped (app.db's loader criteria apply to ORM
    queries only): give them ``execution_options(all_tenants=True)`` so they read the
    same on both paths of :func:`first_row` and :func:`rows_changed`, and scope them by
    primary key. Every parameter must be a named ``bindparam`` without a value (checked
    when compiled): the caller passes them all.

    On SQLite a statement may name the index the planner must read a table through, with
    ``with_hint(table, "INDEXED BY name", "sqlite")``: SQLAlchemy's SQLite compiler leaves
    table hints out, this one writes them. SQLite's documentation gives INDEXED BY for
    exactly this, a time-sensitive statement whose plan must not change: without the
    index the statement fails (a test runs it) instead of quietly getting slower. The
    ORM path of :func:`first_row` runs the statement without the hint (same rows)."""

    def __init__(self, statement: Select[Any] | Update) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, str], PlainSQL] = {}

    def compiled(self, dialect: Dialect) -> PlainSQL:
        """The statement for ``dialect``'s driver (compiled on first use)."""
        key = (dialect.name, dialect.driver)
        found = self._compiled.get(key)
        if found is None:
            compiled: SQLCompiler = (
                SQLITE_COMPILER(dialect, self.statement)
                if dialect.name == "sqlite"
                else self.statement.compile(dialect=dialect)  # type: ignore[assignment]
            )
            for name, bind in compiled.binds.items():
                if bind.value is not None or bind.callable is not None or bind.expanding:
                    raise TypeError(f"{name!r}: plain statements take named parameters only")
            binds = {
                name: bind.type.dialect_impl(dialect).bind_processor(dialect)
                for name, bind in compiled.binds.items()
            }
            columns = getattr(self.statement, "selected_columns", ())
            found = self._compiled[key] = PlainSQL(
                str(compiled),
                _encoder(binds, compiled.positiontup if compiled.positional else None),
                _decoder(
                    [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns]
                ),
            )
        return found


class PlainSQL(NamedTuple):
    """A :class:`PlainQuery` as one driver runs it."""

    sql: str
    #: the parameters by name to what the driver takes (a tuple for a positional driver)
    encode: Callable[[dict[str, Any]], Any]
    #: the driver's row to the columns' Python values
    decode: Callable[[Sequence[Any]], tuple[Any, ...]]


def _encoder(
    processors: dict[str, Any], order: Sequence[str] | None
) -> Callable[[dict[str, Any]], Any]:
    """One function that runs each parameter's bind processor and puts the parameters in
    the driver's order (positional drivers) or leaves them by name."""
    steps = [(name, process) for name, process in processors.items() if process]

    def encode(params: dict[str, Any]) -> Any:
        if steps:
            params = dict(params)
            for name, process in steps:
                params[name] = process(params[name])
        return params if order is None else tuple(params[name] for name in order)

    return encode


def _decoder(
    processors: list[Callable[[Any], Any] | None],
) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """One function that runs each column's result processor (None values pass as they are)."""
    steps = [(index, process) for index, process in enumerate(processors) if process]

    def decode(row: Sequence[Any]) -> tuple[Any, ...]:
        values = list(row)
        for index, process in steps:
            value = values[index]
            if value is not None:
                values[index] = process(value)
        return tuple(values)

    return decode


class SessionOnDemand:
    """A unit of work's ORM session (a request's), made the first time something asks for
    it (call it). Until then nothing can be pending in it, so for a read-only unit
    :func:`first_row` and :func:`rows_changed` run on the plain connections without making
    it: a validation that passes and writes nothing never pays for an ORM session
    (≈ 15 µs a request). ``make(write=...)`` makes it; ``tenant_id`` is the tenant scope
    it is made with (:func:`scope_to_tenant`)."""

    def __init__(self, database: Database, *, write: bool, make: Callable[..., Session]) -> None:
        self.database = database
        self.write = write
        self.tenant_id: str | None = None
        #: the session, once made
        self.made: Session | None = None
        self._make = make

    def __call__(self) -> Session:
        if self.made is None:
            self.made = self._make(write=self.write)
            scope_to_tenant(self.made, self.tenant_id)
        return self.made


def opened(db: Session | SessionOnDemand) -> Session:
    """``db`` itself, or the session it makes on demand."""
    return db() if isinstance(db, SessionOnDemand) else db


def _plain_database(db: Session | SessionOnDemand) -> Database | None:
    """The Database whose plain connections may run a statement for ``db``; None when it
    must go through ``db`` instead: a transaction is open on it (the statement must see,
    or join, what that transaction did) or changes wait in it to be flushed."""
    if isinstance(db, SessionOnDemand):
        if db.made is None:
            return db.database
        db = db.made
    database: Database | None = db.info.get("database")
    if database is None or db.in_transaction() or db.new or db.dirty or db.deleted:
        return None
    return database


def first_row(
    db: Session | SessionOnDemand, query: PlainQuery, **params: Any
) -> tuple[Any, ...] | None:
    """The first row of ``query``, or None: read on one of the database's
    :class:`PlainConnections` (see the module docstring), or through ``db`` when a
    transaction is open on it, so it sees what the transaction wrote. Errors come as
    SQLAlchemy's (a lost database is an OperationalError, answered 503 by the web layer)."""
    database = _plain_database(db)
    if database is None:
        return opened(db).execute(query.statement, params).first()  # type: ignore[return-value]
    return database.plain_row(query, params)


def rows_changed(db: Session | SessionOnDemand, query: PlainQuery, **params: Any) -> int:
    """Run the UPDATE ``query``; how many rows it changed. For a read-only session with
    no transaction open (a validation, a page view): one autocommit statement on a plain
    connection, committed at once (one round trip, where the ORM would take five: BEGIN,
    SAVEPOINT, the statement, RELEASE, COMMIT). For a session opened to write
    (``write=True``: its caller commits or rolls back what it does), or one with a
    transaction open: inside a savepoint of that transaction, committed with it, so a
    failure leaves the transaction usable. Errors come as SQLAlchemy's; a lost connection
    is not tried again (a write is not repeated blindly)."""
    writes = db.write if isinstance(db, SessionOnDemand) else db.info.get("write")
    database = None if writes else _plain_database(db)
    if database is None:
        session = opened(db)
        with session.begin_nested():
            return session.execute(query.statement, params).rowcount  # type: ignore[attr-defined,no-any-return]
    return database.plain_change(query, params)


class PlainConnections:
    """Autocommit DBAPI connections for :func:`first_row` and :func:`rows_changed`, kept
    on a stack.

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
        _EVERY.add(self)
        #: called with each statement's SQL before it runs (the SQLAlchemy engine events
        #: never see these statements; tests and bench/writes.py count them here)
        self.watchers: list[Callable[[str], None]] = []

    def fetch_one(self, sql: str, args: Any) -> Any:
        """The first row of a SELECT (tried once more on a new connection if the one taken
        was lost: a read can be repeated)."""
        return self._run(sql, args, _first, attempts=2)

    def change(self, sql: str, args: Any) -> int:
        """Rows changed by an UPDATE, committed on return (never tried twice)."""
        return self._run(sql, args, _rowcount, attempts=1)  # type: ignore[no-any-return]

    def _run(self, sql: str, args: Any, result: Callable[[Any], Any], *, attempts: int) -> Any:
        for watch in self.watchers:
            watch(sql)
        for attempt in range(1, attempts + 1):
            try:
                connection = self._take()
            except self._error as error:
                raise DBAPIError.instance(sql, args, error, self._error) from error
            cursor = None
            try:
                cursor = connection.cursor()
                cursor.execute(sql, args)
                answer = result(cursor)
                cursor.close()
            except self._error as error:
                lost = self.dialect.is_disconnect(error, connection, cursor)
                _close_quietly(connection)
                if lost:
                    self.close()
                    if attempt < attempts:
                        continue
                raise DBAPIError.instance(
                    sql, args, error, self._error, connection_invalidated=lost
                ) from error
            if len(self._idle) < self.keep:
                self._idle.append(connection)
            else:
                _close_quietly(connection)
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def idle(self) -> int:
        """How many connections wait for the next read."""
        return len(self._idle)

    def close(self) -> None:
        """Close the idle connections (the ones in use close when given back)."""
        while True:
            try:
                connection = self._idle.pop()
            except IndexError:
                return
            _close_quietly(connection)

    def _forget(self) -> None:
        """In a forked child, forget the parent's connections (never use or close them:
        their sockets are the parent's)."""
        self._idle = deque()

    def _take(self) -> Any:
        try:
            return self._idle.pop()
        except IndexError:
            made = self.engine.raw_connection()  # runs the engine's connect-time set-up
            made.detach()  # ours from now on: the engine's pool forgets it
            return made.dbapi_connection


#: every PlainConnections of this process, for a forked child to forget their connections
#: (checked once at the fork, not by a getpid() system call on every statement)
_EVERY: weakref.WeakSet[PlainConnections] = weakref.WeakSet()


def _forget_parents_connections() -> None:
    for plain in list(_EVERY):
        plain._forget()


os.register_at_fork(after_in_child=_forget_parents_connections)


def _first(cursor: Any) -> Any:
    return cursor.fetchone()


def _rowcount(cursor: Any) -> Any:
    return cursor.rowcount


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


def scope_to_tenant(db: Session | SessionOnDemand, tenant_id: str | None) -> None:
    """From now on, ORM queries on ``db`` see only ``tenant_id``'s rows."""
    if isinstance(db, SessionOnDemand):
        db.tenant_id = tenant_id
        if db.made is None:
            return
        db = db.made
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


def _after_rollback(db: Session) -> None:
    outbox.after_rollback(db)
    db.info.pop("committed_events", None)
