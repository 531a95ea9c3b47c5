"""When the database goes away: 503 with a clear message, never a success for a session
that cannot be checked, and recovery without a restart."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from testkit import databases
from testkit.databases import PostgresCluster
from testkit.rows import Factory, prepare_database
from testkit.tools import require_tool
from testkit.web import csrf_from, login


@pytest.fixture
def own_postgres(tmp_path: Path):
    """A cluster of this test's own, so stopping it disturbs nobody else."""
    bin_dir = databases.postgres_bin()
    if bin_dir is None:
        require_tool("/usr/lib/postgresql/15/bin/initdb", "the outage test needs PostgreSQL")
    cluster = PostgresCluster(bin_dir).start()
    cluster.admin('CREATE DATABASE "holdfast"')
    yield cluster
    cluster.stop()


def test_postgres_outage_answers_503_then_recovers(own_postgres, new_app, mailbox, make, tmp_path):
    url = own_postgres.url("holdfast")
    prepare_database(url, tmp_path)
    app = new_app(DATABASE_URL=url)
    services = app.extensions["holdfast"]
    factory = Factory(services, services.clock)
    tenant = factory.tenant("outage")
    factory.user("ops@outage.test", tenant)
    client = app.test_client()
    login(client, mailbox, "ops@outage.test")
    assert client.get("/devices").status_code == 200

    assert client.get("/auth/verify").status_code == 200
    own_postgres.pause()
    assert client.get("/auth/verify").status_code == 503  # the plain hot-path read too
    page = client.get("/devices")
    assert page.status_code == 503
    assert "cannot reach its database" in page.text
    assert 'class="narrow error-page"' in page.text  # the styled page, like every page
    # in the browser's language: the person's own setting would need the database
    german = client.get("/devices", headers={"Accept-Language": "de"})
    assert german.status_code == 503 and german.headers["Retry-After"] == "5"
    assert '<html lang="de">' in german.text
    assert "Holdfast erreicht seine Datenbank gerade nicht." in german.text
    api = client.get("/session/status")
    assert api.status_code == 503
    assert api.get_json()["code"] == "unavailable"
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200

    own_postgres.resume()
    assert client.get("/auth/verify").status_code == 200  # no restart needed
    assert client.get("/devices").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_connections_lost_under_a_validation_are_replaced_without_an_error(
    own_postgres, new_app, mailbox, tmp_path
):
    """The hot path reads without a pool pre-ping (app.db.PlainConnections): when the
    server drops every connection (a restart, a failover), the next validation finds its
    connection dead, replaces it and answers, instead of failing one request per stale
    connection."""
    url = own_postgres.url("holdfast")
    prepare_database(url, tmp_path)
    app = new_app(DATABASE_URL=url)
    services = app.extensions["holdfast"]
    factory = Factory(services, services.clock)
    factory.user("ops@dropped.test", factory.tenant("dropped"))
    client = app.test_client()
    login(client, mailbox, "ops@dropped.test")
    for _ in range(3):
        assert client.get("/auth/verify").status_code == 200
    plain = services.database.plain
    assert plain.idle, "the validations left a connection to reuse"
    own_postgres.admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = 'holdfast' AND pid <> pg_backend_pid()"
    )
    assert client.get("/auth/verify").status_code == 200
    assert client.get("/auth/verify").status_code == 200


@pytest.mark.filterwarnings("ignore:.*multi-threaded.*:DeprecationWarning")  # the SMTP thread
def test_a_forked_worker_forgets_its_parents_plain_connections(services):
    """gunicorn --preload forks workers from a process that may have read already: a
    child must open its own connections, never share the parent's sockets."""
    plain = services.database.plain
    plain.fetch_one("SELECT 1", ())
    assert plain.idle == 1
    child = os.fork()
    if child == 0:  # pragma: no cover (runs in the child)
        os._exit(0 if plain.idle == 0 else 1)
    _pid, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child saw the parent's connection"
    assert plain.idle == 1, "the parent keeps its own"
    assert plain.fetch_one("SELECT 1", ()) == (1,), "and it still works"


def test_sqlite_write_lock_answers_503_for_writes(new_app, mailbox, template_db, tmp_path):
    path = tmp_path / "locked.db"  # SQLite in both passes of the suite: it is about SQLite
    shutil.copy(template_db, path)
    app = new_app(DATABASE_URL=f"sqlite:///{path}", SQLITE_BUSY_TIMEOUT=0.5)
    factory = Factory(app.extensions["holdfast"], app.extensions["holdfast"].clock)
    factory.user("sam@lock.test", factory.tenant("lock"))
    client = app.test_client()
    login(client, mailbox, "sam@lock.test")
    page = client.get("/devices")
    token = csrf_from(page.text)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # someone else holds the write lock
    try:
        response = client.post(
            "/sessions/end-others", data={"csrf_token": token}, headers={"Accept-Language": "de"}
        )
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        # the styled error page, in the browser's language, drawn with the database locked
        assert 'class="narrow error-page"' in response.text
        assert "Holdfast erreicht seine Datenbank gerade nicht." in response.text
        assert client.get("/devices").status_code == 200  # reads still checked and served
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert client.post("/sessions/end-others", data={"csrf_token": token}).status_code == 302
