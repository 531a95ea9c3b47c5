"""Counting the SQL a block of code sends: what the write-budget tests and the writes
benchmark measure."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from sqlalchemy import Engine, event

from app.db import Database, PlainConnections


@contextmanager
def statements_run(
    target: Engine | Database | PlainConnections, *, begins: bool = False
) -> Iterator[list[str]]:
    """The SQL statements run inside the block, in order: on an engine, on the hot
    path's plain connections (app.db.PlainConnections), or on both of a Database. With
    ``begins``, also "BEGIN" where an engine's transaction starts (including where the
    driver begins implicitly)."""
    seen: list[str] = []
    engine = target.engine if isinstance(target, Database) else target
    plain = target.plain if isinstance(target, Database) else target

    def statement(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        seen.append(sql)

    def begin(_conn: Any) -> None:
        seen.append("BEGIN")

    listeners: list[tuple[str, Any]] = [("before_cursor_execute", statement)]
    if begins:
        listeners.append(("begin", begin))
    with ExitStack() as undo:
        if isinstance(engine, Engine):
            for name, listener in listeners:
                event.listen(engine, name, listener)
                undo.callback(event.remove, engine, name, listener)
        if isinstance(plain, PlainConnections):
            plain.watchers.append(seen.append)
            undo.callback(plain.watchers.remove, seen.append)
        yield seen


def writes_in(statements: list[str]) -> list[str]:
    """The INSERT, UPDATE and DELETE statements among ``statements``."""
    return [s for s in statements if s.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))]
