"""Test databases: a SQLite file copied from a migrated template, or, with
``HOLDFAST_TEST_DB=postgresql``, a database cloned from a migrated template on a throwaway
PostgreSQL cluster that this module starts on 127.0.0.1 (Debian's postgresql package)."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import sqlalchemy as sa

from testkit.cluster import free_port

BACKEND = os.environ.get("HOLDFAST_TEST_DB", "sqlite")


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL server's bin folder."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PostgresCluster:
    """initdb + pg_ctl in a temp folder, trust auth on 127.0.0.1 only, stopped at the end.
    The server refuses to run as root, so as root it runs as the postgres user."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.folder = Path(tempfile.mkdtemp(prefix="holdfast-pg-"))
        self.port = free_port()
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        command = [str(arg) for arg in args]
        if self.as_root:
            command = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(command)]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> PostgresCluster:
        """A new cluster (initdb) in the temp folder, started; raises CalledProcessError
        with PostgreSQL's output when initdb or pg_ctl fail."""
        if self.as_root:
            shutil.chown(self.folder, "postgres")
        data = self.folder / "data"
        self._run(self.bin / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.resume()
        return self

    def pause(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data (a database outage). ``mode`` is pg_ctl's:
        ``fast`` (clean shutdown) or ``immediate`` (a crash: recovery replays the WAL)."""
        self._run(self.bin / "pg_ctl", "-D", self.folder / "data", "-m", mode, "-w", "stop")

    def resume(self) -> None:
        """Start the server on the cluster's data (again, after :meth:`pause`)."""
        options = f"'-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off'"
        self._run(
            self.bin / "pg_ctl",
            "-D",
            self.folder / "data",
            "-l",
            self.folder / "pg.log",
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self) -> None:
        try:
            self._run(
                self.bin / "pg_ctl", "-D", self.folder / "data", "-m", "immediate", "-w", "stop"
            )
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, statement: str) -> None:
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(statement)
        finally:
            engine.dispose()

    def clone(self, template: str) -> str:
        """A new database copied from ``template``; returns its URL."""
        name = f"t_{secrets.token_hex(6)}"
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def drop(self, url: str) -> None:
        name = sa.make_url(url).database
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
