"""``holdfast backup PATH``: a consistent copy of a SQLite database while it is in use.

SQLite's online backup API (``sqlite3.Connection.backup``) copies the database page by
page inside one read transaction. With the database in WAL mode (app.db) that read
transaction sees one committed state and does not stop writers, so the copy is
consistent however busy the app is: every transaction is in it entirely or not at all.
All pages are copied in one step (``pages=-1``); a copy made in several steps would
start over each time another connection wrote in between.

The copy is written next to the target under a temporary name, switched to a rollback
journal (one self-contained file, no ``-wal`` beside it), checked
(``PRAGMA quick_check``), made readable by its owner only (it holds everything the
database holds), and only then linked into place: a half-written file never carries the
target's name, and an existing file is never overwritten.

PostgreSQL has its own tool for this (``pg_dump``); :func:`pg_dump_command` gives the
documented line.
"""

from __future__ import annotations

import os
import secrets
import shlex
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url


class BackupError(Exception):
    """The backup was not made; the message says why."""


@dataclass(frozen=True)
class Copy:
    path: Path
    size: int
    pages: int


def backup_sqlite(source: Path, target: Path, *, busy_timeout: float = 30.0) -> Copy:
    """Copy the SQLite database at ``source`` to the new file ``target``. Raises
    BackupError when ``target`` exists, its folder does not, or the copy fails its check."""
    if target.exists() or target.is_symlink():
        raise BackupError(f"{target} exists already: a backup never overwrites a file.")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} is not a folder.")
    if not source.is_file():
        raise BackupError(f"{source}: there is no database there.")
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(descriptor)
    try:
        src = sqlite3.connect(source, timeout=busy_timeout)
        try:
            dst = sqlite3.connect(partial)
            try:
                src.backup(dst, pages=-1)
                dst.execute("PRAGMA journal_mode=DELETE")
                verdict = dst.execute("PRAGMA quick_check").fetchone()[0]
                pages = dst.execute("PRAGMA page_count").fetchone()[0]
            finally:
                dst.close()
        finally:
            src.close()
        if verdict != "ok":
            raise BackupError(f"the copy failed SQLite's check: {verdict}")
        try:
            os.link(partial, target)  # fails if the target appeared meanwhile
        except FileExistsError as error:
            raise BackupError(
                f"{target} exists already: a backup never overwrites a file."
            ) from error
    finally:
        partial.unlink(missing_ok=True)
    return Copy(path=target, size=target.stat().st_size, pages=int(pages))


def pg_dump_command(url: str, target: Path) -> str:
    """The documented ``pg_dump`` line for a PostgreSQL database URL (custom format,
    for ``pg_restore``), without the password: pg_dump takes it from ``PGPASSWORD`` or
    ``~/.pgpass``."""
    given = make_url(url)
    plain = URL.create(
        "postgresql",
        username=given.username,
        host=given.host,
        port=given.port,
        database=given.database,
        query=given.query,
    )
    return (
        f"pg_dump --format=custom --file={_quote(str(target))} "
        f"{_quote(plain.render_as_string(hide_password=False))}"
    )


def _quote(text: str) -> str:
    return shlex.quote(text)
