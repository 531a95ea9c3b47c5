"""The files an operator installs (deploy/systemd/, deploy/nginx.conf) and the documents
that install them agree: one set of paths, one settings file for every unit, commands
that exist, and units systemd accepts. The timers' commands, given that settings file,
check the deployment's own database."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from testkit.cluster import HOLDFAST, ROOT
from testkit.tools import require_tool

UNITS = ROOT / "deploy" / "systemd"
PROGRAM = "/opt/holdfast/bin/holdfast"
SETTINGS = "/etc/holdfast/holdfast.env"
DATA = "/var/lib/holdfast"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "compose.yaml"]


def unit(path: Path) -> configparser.ConfigParser:
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.optionxform = str  # type: ignore[assignment,method-assign]
    parsed.read_string(path.read_text())
    return parsed


def services() -> list[Path]:
    return sorted(UNITS.glob("*.service"))


def test_every_unit_reads_the_one_settings_file_and_runs_the_installed_program():
    names = {path.name for path in services()}
    assert names == {
        "holdfast-web.service",
        "holdfast-worker.service",
        "holdfast-purge.service",
        "holdfast-audit-verify.service",
    }
    for path in services():
        service = unit(path)["Service"]
        assert service["EnvironmentFile"] == SETTINGS, path.name
        assert service["User"] == "holdfast" and service["WorkingDirectory"] == DATA, path.name
        assert service["StateDirectory"] == "holdfast", path.name  # /var/lib/holdfast
        command = shlex.split(service["ExecStart"])
        assert command[0] == PROGRAM, path.name
        # The subcommand exists, with these options.
        done = subprocess.run(
            [str(HOLDFAST), *command[1:], "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{path.name}: {done.stderr}"
    for timer in UNITS.glob("*.timer"):
        assert (UNITS / timer.name.replace(".timer", ".service")).is_file()
        assert unit(timer)["Timer"]["OnCalendar"]
        assert unit(timer)["Install"]["WantedBy"] == "timers.target"


def test_the_web_unit_serves_where_nginx_sends():
    command = unit(UNITS / "holdfast-web.service")["Service"]["ExecStart"]
    bind = re.search(r"--bind (\S+)", command)
    assert bind is not None
    upstream = re.search(
        r"upstream holdfast \{(.*?)\n\}", (ROOT / "deploy" / "nginx.conf").read_text(), re.S
    )
    assert upstream is not None
    assert re.search(rf"(?m)^\s*server {re.escape(bind[1])}\b", upstream[1])


def test_systemd_accepts_the_units(tmp_path: Path):
    analyze = require_tool("systemd-analyze", "checks the unit files")
    for path in UNITS.iterdir():
        # The installed program's path, pointed at this checkout's for the check.
        (tmp_path / path.name).write_text(path.read_text().replace(PROGRAM, str(HOLDFAST)))
    done = subprocess.run(
        [analyze, "verify", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


def test_the_deploy_guide_shows_the_web_unit_as_shipped():
    guide = (ROOT / "docs" / "deploy.md").read_text()
    shown = re.findall(r"```ini\n(.*?)```", guide, re.S)
    assert (UNITS / "holdfast-web.service").read_text() in shown


def test_every_document_uses_the_same_paths():
    for path in DOCS:
        text = path.read_text()
        for old in (
            "/srv/holdfast",
            "/etc/holdfast.env",
            "/etc/holdfast/env",
            ".venv/bin/gunicorn",
        ):
            assert not re.search(re.escape(old) + r"(?![\w.-])", text), f"{path.name}: {old}"
    guide = (ROOT / "docs" / "deploy.md").read_text()
    for place in (PROGRAM, SETTINGS, DATA):
        assert place in guide
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert SETTINGS in operations and "holdfast-purge.timer" in operations


@pytest.fixture
def settings_file(tmp_path: Path, database_url: str, app) -> Path:  # type: ignore[no-untyped-def]
    """A settings file as deploy.md writes one, for the test's database (with a tenant
    and its audit events)."""
    from testkit.values import SECRET

    path = tmp_path / "holdfast.env"
    path.write_text(
        f"HOLDFAST_SECRET_KEY={SECRET}\n"
        f"HOLDFAST_DATABASE_URL={database_url}\n"
        f"HOLDFAST_DATA_DIR={tmp_path / 'data'}\n"
        'HOLDFAST_MAIL_FROM="Holdfast <no-reply@example.com>"\n'
        "HOLDFAST_MAIL_URL=console\n"
    )
    return path


def test_the_audit_timer_checks_the_deployments_database(
    settings_file: Path, tmp_path: Path, make, clock
):
    """holdfast-audit-verify.service's command, with the settings file loaded the way
    the documented wrapper and cron lines load it, verifies the tenant's chain in the
    deployment's database; the same command without it would check a database of its own
    (what the old nightly cron line did)."""
    tenant = make.tenant("ward")
    make.user("nurse@ward.test", tenant)  # an audited change: the chain has an event
    command = unit(UNITS / "holdfast-audit-verify.service")["Service"]["ExecStart"]
    command = command.replace(PROGRAM, str(HOLDFAST))
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLDFAST_")}
    loaded = subprocess.run(
        ["sh", "-c", f'set -a; . "{settings_file}"; set +a; exec {command}'],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert re.search(r"^ward: [1-9]\d* events verified", loaded.stdout, re.M), loaded.stdout
    alone = {**env, "HOLDFAST_DATA_DIR": str(tmp_path / "alone")}  # not the checkout's own
    bare = subprocess.run(
        shlex.split(command), cwd=workdir, env=alone, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert "ward" not in bare.stdout
    assert (tmp_path / "alone" / "holdfast.db").exists()  # a database of its own
