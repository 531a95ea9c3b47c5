"""Alembic, driven from the app: `holdfast db upgrade`, `holdfast db revision`,
`holdfast db current`, and the schema check behind ``/readyz`` (:func:`behind`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, inspect, text
from sqlalchemy.orm import Session

from app import paths


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(paths.MIGRATIONS))
    cfg.set_main_option("file_template", "%%(year)d-%%(month).2d-%%(day).2d_%%(rev)s_%%(slug)s")
    cfg.attributes["engine"] = engine
    return cfg


@dataclass(frozen=True)
class Upgrade:
    """What :func:`upgrade` did."""

    #: the database's revision before (None: no schema at all, a fresh database)
    before: str | None
    after: str | None
    #: migrations applied, oldest first
    applied: list[str]


def upgrade(engine: Engine, revision: str = "head", *, sealer: Any = None) -> Upgrade:
    """Apply migrations up to ``revision`` and say what was done. ``sealer`` (an
    app.sealing.Sealer) is handed to migrations that seal stored secrets with the secret
    key; a database that holds such secrets cannot be upgraded without it.

    On SQLite, Alembic's batch mode rebuilds a table to alter it (copy, drop, rename);
    with foreign keys enforced, dropping a table that other rows point at fails. As
    SQLite's documentation prescribes for schema changes, enforcement is switched off
    for the migration (outside any transaction, where the pragma takes effect), the
    references are checked once it is done, and enforcement is switched back on."""
    cfg = alembic_config(engine)
    cfg.attributes["sealer"] = sealer
    before = current(engine)
    with engine.connect() as connection:
        raw = connection.connection.driver_connection if engine.dialect.name == "sqlite" else None
        if raw is not None:
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, revision)
            if raw is not None:
                broken = raw.execute("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration left broken references: {broken[:5]}")
        finally:
            if raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")
    after = current(engine)
    return Upgrade(before=before, after=after, applied=between(before, after))


def current(engine: Engine) -> str | None:
    """The database's revision, or None when it has no schema yet (never migrated)."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.scalar(text("SELECT version_num FROM alembic_version"))


def head() -> str:
    """This release's newest revision."""
    return str(_scripts().get_current_head())


def between(older: str | None, newer: str | None) -> list[str]:
    """The revisions after ``older`` up to ``newer``, oldest first ([] when ``newer`` is
    not ahead of ``older``, or either is a revision this release does not know)."""
    if newer is None or older == newer:
        return []
    try:
        found = list(_scripts().iterate_revisions(newer, older or "base"))
    except CommandError:
        return []
    return [script.revision for script in reversed(found)]


def is_known(revision: str) -> bool:
    """Whether ``revision`` is one of this release's migrations."""
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False


def revision(engine: Engine, message: str) -> None:
    cfg = alembic_config(engine)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.revision(
            cfg, message=message, autogenerate=True, rev_id=datetime.now(UTC).strftime("%Y%m%d%H%M")
        )


@cache
def _scripts() -> ScriptDirectory:
    """This release's migrations (read once per process)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(paths.MIGRATIONS))
    return ScriptDirectory.from_config(cfg)


def behind(db: Session) -> str | None:
    """The database's revision when this release has migrations it has not run (None when
    it has, or when it is newer than this release). A node of a new release that starts
    before ``holdfast db upgrade`` ran is then not ready: its statements may name columns
    or indexes that are not there yet (the hot path's SQLite ``INDEXED BY``, for one).
    A node of the previous release stays ready after the upgrade (migrations add, so the
    old code runs on the new schema): a rolling deploy migrates first, then replaces
    nodes."""
    if not inspect(db.connection()).has_table("alembic_version"):
        return "none"  # never migrated
    stored = db.scalar(text("SELECT version_num FROM alembic_version"))
    scripts = _scripts()
    if stored == scripts.get_current_head():
        return None
    try:
        scripts.get_revision(stored)
    except CommandError:
        return None  # a revision this release does not know: a newer one
    return stored or "none"
