"""`holdfast backup PATH`: a consistent online copy of a SQLite database taken while the
app writes, restorable as the database; on PostgreSQL, the pg_dump line."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app import create_app
from app.clock import FrozenClock
from app.core import accounts, codes, events, signin
from app.core.sessions import idle_timeout, lifetime
from app.demo import seed_bulk
from app.mail import MemoryMailer, plain_text
from app.models import Event, Tenant, UserSession
from testkit.values import SECRET, START


class Inbox(MemoryMailer):
    """Mail kept in memory: the writers read their codes from it."""

    def __init__(self) -> None:
        super().__init__(on_send=self._keep_code)
        self.lock = threading.Lock()
        self.codes: dict[str, list[str]] = {}

    def _keep_code(self, email: EmailMessage) -> None:
        match = re.search(r"code is (\d{6})", plain_text(email))
        if match:
            with self.lock:
                self.codes.setdefault(email["To"], []).append(match.group(1))

    def code_number(self, address: str, number: int) -> str:
        """The ``number``-th code mailed to ``address`` (from 1), once it has come."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with self.lock:
                codes = self.codes.get(address, [])
                if len(codes) >= number:
                    return codes[number - 1]
            time.sleep(0.005)
        raise AssertionError(f"code number {number} to {address} did not come")


def cli(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=list(args))


def make_app(url: str, folder: Path, **extra: Any) -> Flask:
    return create_app(
        {"DATABASE_URL": url, "SECRET_KEY": SECRET, "MAIL_URL": "console", **extra},
        instance_path=folder,
    )


def test_a_backup_taken_under_write_load_restores_and_verifies(tmp_path):
    inbox = Inbox()
    source = tmp_path / "live.db"
    app = make_app(
        f"sqlite:///{source}",
        tmp_path / "live",
        MAILER=inbox,
        CLOCK=FrozenClock(START),  # the writers' time, which the mail sender goes by too
        RATELIMIT_CODES="100000 per minute",
        RATELIMIT_CODES_PER_IP="100000 per minute",
        RATELIMIT_CHECKS="100000 per minute",
        RATELIMIT_CHECKS_PER_IP="100000 per minute",
    )
    services = app.extensions["holdfast"]
    services.sender.start()  # the mail goes out as from a web process
    try:
        assert cli(app, "db", "upgrade").exit_code == 0
        writers = [f"w{number}@acme.test" for number in range(3)]
        with services.session(write=True) as db:
            tenant = accounts.create_tenant(db, "acme", "Acme", now=START)
            for email in writers:
                accounts.add_user(db, tenant, email, now=START)
            db.commit()
            tenant_id = tenant.id
        # Some bulk so that the copy takes a while (and sealed onto the audit chain).
        seed_bulk(
            services.database.engine,
            tenant_id,
            now=START,
            users=300,
            sessions=20_000,
            idle_timeout=idle_timeout,
            lifetime=lifetime,
        )
        with services.session(write=True) as db:
            from app.core import audit

            audit.seal_unsealed(db, audit.chain_of(tenant_id))
            db.commit()

        stop = threading.Event()
        commits = [0] * len(writers)
        failures: list[BaseException] = []

        def write(number: int, email: str) -> None:
            """Sign in, again and again, through the core: each time a challenge, a
            session, a device and their audit events, in two transactions."""
            origin = events.Origin(f"203.0.113.{number + 1}", "backup-test")
            asked = 0
            try:
                while not stop.is_set():
                    with services.session(write=True) as db:
                        challenge = codes.request_code(
                            db,
                            services.hasher,
                            email,
                            now=START,
                            origin=origin,
                            budgets=services.budgets,
                        )
                        db.commit()
                        challenge_id = challenge.id
                    asked += 1
                    code = inbox.code_number(email, asked)
                    with services.session(write=True) as db:
                        signin.sign_in(
                            db,
                            services.hasher,
                            challenge_id,
                            code,
                            now=START,
                            origin=origin,
                            budgets=services.budgets,
                        )
                        db.commit()
                    commits[number] += 2
            except BaseException as error:
                failures.append(error)

        threads = [
            threading.Thread(target=write, args=(number, email), daemon=True)
            for number, email in enumerate(writers)
        ]
        for thread in threads:
            thread.start()
        while sum(commits) < 30 and not failures:
            time.sleep(0.01)
        before = sum(commits)
        backup = tmp_path / "backups" / "holdfast-backup.db"
        backup.parent.mkdir()
        taken = cli(app, "backup", str(backup))
        during = sum(commits) - before
        time.sleep(0.2)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert not failures, failures
        assert taken.exit_code == 0, taken.output
        assert f"Backed up {source} to {backup}" in taken.output
        assert sum(commits) > before  # the writers kept going through the backup
        print(f"writer commits: {before} before the backup, {during} during it")
        assert backup.stat().st_mode & 0o777 == 0o600
        assert not list(backup.parent.glob(".*partial"))  # nothing half-written left
        assert not Path(f"{backup}-wal").exists()  # one self-contained file
        with services.session() as db:
            live_sessions = db.scalar(select(func.count()).select_from(UserSession))
    finally:
        stop_all = locals().get("stop")
        if stop_all is not None:
            stop_all.set()
        services.close()

    with sqlite3.connect(backup) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    # Restore: the copy, opened as the database.
    restored = make_app(f"sqlite:///{backup}", tmp_path / "restored")
    try:
        verified = cli(restored, "audit", "verify")
        assert verified.exit_code == 0, verified.output
        assert "events verified" in verified.output
        assert cli(restored, "db", "current", "--check").exit_code == 0
        assert restored.test_client().get("/readyz").json == {"status": "ready"}
        rest = restored.extensions["holdfast"]
        with rest.session() as db:
            copied = db.scalar(select(func.count()).select_from(UserSession))
            assert 20_000 < copied <= live_sessions  # a moment between start and end
            assert db.scalar(select(func.count()).select_from(Tenant)) == 1
            assert db.scalar(select(func.count()).select_from(Event)) > 0
    finally:
        restored.extensions["holdfast"].close()


def test_a_backup_never_overwrites(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'h.db'}", tmp_path)
    try:
        assert cli(app, "db", "upgrade").exit_code == 0
        existing = tmp_path / "existing.db"
        existing.write_bytes(b"precious")
        refused = cli(app, "backup", str(existing))
        assert refused.exit_code == 1
        assert "exists already: a backup never overwrites a file" in refused.output
        assert existing.read_bytes() == b"precious"
        nowhere = cli(app, "backup", str(tmp_path / "missing" / "b.db"))
        assert nowhere.exit_code == 1 and "is not a folder" in nowhere.output
    finally:
        app.extensions["holdfast"].close()


@pytest.mark.parametrize(
    ("url", "line"),
    [
        (
            "postgresql+psycopg://holdfast:s3cret@db.example.com:5433/holdfast",
            "pg_dump --format=custom --file=/backups/holdfast.dump "
            "postgresql://holdfast@db.example.com:5433/holdfast",
        ),
        (
            "postgresql://holdfast@/holdfast?host=/run/postgresql",
            "pg_dump --format=custom --file=/backups/holdfast.dump "
            "'postgresql://holdfast@/holdfast?host=%2Frun%2Fpostgresql'",
        ),
    ],
)
def test_on_postgresql_it_gives_the_pg_dump_line(tmp_path, url, line):
    app = make_app(url, tmp_path)  # nothing connects: the command only reads the URL
    try:
        answer = cli(app, "backup", "/backups/holdfast.dump")
        assert answer.exit_code == 1
        assert "On PostgreSQL use pg_dump" in answer.output
        assert line in answer.output
        assert "s3cret" not in answer.output  # pg_dump reads PGPASSWORD or ~/.pgpass
    finally:
        app.extensions["holdfast"].close()
