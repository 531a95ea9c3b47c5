"""Alembic, driven from the app: `holdfast db upgrade` and `holdfast db revision`."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from app import ROOT


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("file_template", "%%(year)d-%%(month).2d-%%(day).2d_%%(rev)s_%%(slug)s")
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision``.

    On SQLite, Alembic's batch mode rebuilds a table to alter it (copy, drop, rename);
    with foreign keys enforced, dropping a table that other rows point at fails. As
    SQLite's documentation prescribes for schema changes, enforcement is switched off
    for the migration (outside any transaction, where the pragma takes effect), the
    references are checked once it is done, and enforcement is switched back on."""
    cfg = alembic_config(engine)
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


def revision(engine: Engine, message: str) -> None:
    cfg = alembic_config(engine)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.revision(
            cfg, message=message, autogenerate=True, rev_id=datetime.now(UTC).strftime("%Y%m%d%H%M")
        )
