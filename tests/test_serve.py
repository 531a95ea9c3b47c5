"""`holdfast serve` (app/cli/serve.py), the instance folder (HOLDFAST_DATA_DIR) and the one
version, from the checkout. The installed wheel does the same in tests/test_release.py."""

from __future__ import annotations

import os
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import text

from app import __version__, create_app, paths
from app.cli.readiness import NotReady, preflight, wait_for_database
from testkit.cluster import HOLDFAST, ROOT, Server, Servers, answers, call, free_port, port_open
from testkit.values import SECRET

PYPROJECT_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def settings(tmp_path: Path, **more: str) -> dict[str, str]:
    """The environment of a `holdfast` command: this one without HOLDFAST_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOLDFAST_", "GUNICORN_"))}
    env.update(
        HOLDFAST_DATA_DIR=str(tmp_path / "data"),
        HOLDFAST_SECRET_KEY=SECRET,
        HOLDFAST_LOG_FORMAT="text",
        WEB_CONCURRENCY="1",
        **more,
    )
    return env


def holdfast(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(HOLDFAST), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_one_version_everywhere(client):
    assert __version__ == PYPROJECT_VERSION
    assert holdfast(dict(os.environ), "--version").stdout.strip() == f"holdfast {__version__}"
    assert client.get("/api/openapi.json").json["info"]["version"] == __version__


def test_serve_refuses_a_database_that_has_not_been_upgraded(tmp_path: Path):
    port = free_port()
    done = holdfast(settings(tmp_path), "serve", "--bind", f"127.0.0.1:{port}")
    assert done.returncode == 1
    assert "holdfast db upgrade" in done.stderr and "no Holdfast schema" in done.stderr
    assert not port_open(port)  # no server was started


def test_serve_refuses_a_database_that_does_not_answer(tmp_path: Path):
    port, dead = free_port(), free_port()
    url = f"postgresql+psycopg://holdfast:x@127.0.0.1:{dead}/holdfast?connect_timeout=2"
    done = holdfast(
        settings(tmp_path, HOLDFAST_DATABASE_URL=url), "serve", "--bind", f"127.0.0.1:{port}"
    )
    assert done.returncode == 1
    assert "does not answer" in done.stderr and "HOLDFAST_DATABASE_URL" in done.stderr
    assert "Traceback" not in done.stderr
    assert not port_open(port)


def test_preflight_passes_on_a_migrated_database_and_names_the_fix_otherwise(
    app: Flask, tmp_path: Path
):
    preflight(app)  # the test database is migrated
    services = app.extensions["holdfast"]
    with services.database.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '202611230911'"))
    with pytest.raises(NotReady, match=r"revision 202611230911.*holdfast db upgrade"):
        preflight(app)


class Serve(Server):
    """`holdfast serve` from the checkout, on a free port."""

    name = "serve"

    def __init__(self, folder: Path, env: dict[str, str], *args: str) -> None:
        super().__init__(folder)
        self.env = env
        self.args = args

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Serve:
        command = [str(HOLDFAST), "serve", *self.args, "--bind", f"127.0.0.1:{self.port}"]
        self._spawn(command, {**self.env, "HOLDFAST_BASE_URL": self.url})
        self._wait_ready(lambda: answers(f"{self.url}/readyz"))
        return self


def test_serve_migrate_creates_the_database_in_the_data_dir_and_serves(tmp_path: Path):
    """What the container image runs: a fresh SQLite database in HOLDFAST_DATA_DIR,
    migrated at start, served by gunicorn with the shipped settings."""
    env = settings(tmp_path)
    env.pop("HOLDFAST_SECRET_KEY")  # generated into the data dir
    servers = Servers()
    try:
        node = servers.add(Serve(servers.folder, env, "--migrate")).start()
        assert call(f"{node.url}/readyz").json() == {"status": "ready"}
        page = call(f"{node.url}/login")
        assert page.status == 200 and "Sign in" in page.text
        log = node.log.read_text()
        assert "Using worker: OneThreadWorker" in log  # deploy/gunicorn.conf.py's worker
        assert f"Listening at: http://127.0.0.1:{node.port}" in log
    finally:
        servers.close()
    data = tmp_path / "data"
    assert (data / "holdfast.db").is_file() and (data / "secret_key").is_file()


def test_gunicorn_settings_from_the_environment_are_honoured(tmp_path: Path, database_url):
    """GUNICORN_CMD_ARGS tunes `holdfast serve` as it tunes plain gunicorn."""
    env = settings(tmp_path, HOLDFAST_DATABASE_URL=database_url)
    env["GUNICORN_CMD_ARGS"] = "--workers 2 --graceful-timeout 3"
    env.pop("WEB_CONCURRENCY")
    servers = Servers()
    try:
        node = servers.add(Serve(servers.folder, env)).start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and node.log.read_text().count("Booting worker") < 2:
            time.sleep(0.1)
        assert node.log.read_text().count("Booting worker") == 2
    finally:
        servers.close()


def test_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("HOLDFAST_DATA_DIR", str(tmp_path / "var" / "holdfast"))
    assert paths.data_dir() == tmp_path / "var" / "holdfast"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOLDFAST_DATA_DIR", "relative/data")
    assert paths.data_dir() == tmp_path / "relative" / "data"
    monkeypatch.delenv("HOLDFAST_DATA_DIR")
    assert paths.data_dir() == ROOT / "instance"  # a checkout keeps its own instance/
    monkeypatch.setenv("HOLDFAST_DATA_DIR", str(tmp_path / "made"))
    app = create_app({"MAIL_URL": "console"})
    assert app.instance_path == str(tmp_path / "made")
    assert app.config["DATABASE_URL"] == f"sqlite:///{tmp_path / 'made' / 'holdfast.db'}"
    assert (tmp_path / "made" / "secret_key").read_text().strip() == app.config["SECRET_KEY"]


def test_db_wait_gives_up_on_a_database_that_never_answers(tmp_path: Path):
    """compose.yaml's migrate step waits for PostgreSQL (`holdfast db --wait S upgrade`):
    a database that never answers fails it after S seconds, with the reason."""
    dead = free_port()
    url = f"postgresql+psycopg://holdfast:x@127.0.0.1:{dead}/holdfast?connect_timeout=1"
    started = time.monotonic()
    done = holdfast(settings(tmp_path, HOLDFAST_DATABASE_URL=url), "db", "--wait", "2", "upgrade")
    took = time.monotonic() - started
    assert done.returncode == 1 and 1.5 < took < 30
    assert "Waiting for the database" in done.stderr
    assert "did not answer within 2 s" in done.stderr and "Traceback" not in done.stderr


def test_db_wait_returns_at_once_when_the_database_answers(app: Flask):
    started = time.monotonic()
    wait_for_database(app, 30)
    assert time.monotonic() - started < 5
