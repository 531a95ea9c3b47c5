"""Settings from the environment, from files (``HOLDFAST_<NAME>_FILE``), from a .env
file, and the secret key's fallbacks (app/config.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from flask import Flask

from app import create_app
from app.config import SECRET_SETTINGS, ConfigError
from testkit.values import SECRET

OLD = "old-secret-" + "o" * 40
OLDER = "older-secret-" + "p" * 40


@pytest.fixture
def made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Make apps from the environment alone (no overrides but the database), in a
    working directory of their own, with no HOLDFAST_* variable inherited."""
    for name in list(os.environ):
        if name.startswith("HOLDFAST_"):
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOLDFAST_DATABASE_URL", f"sqlite:///{tmp_path / 'h.db'}")
    apps: list[Flask] = []

    def build(**overrides) -> Flask:
        app = create_app(overrides or None, instance_path=tmp_path / "instance")
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["holdfast"].close()


def secret_file(tmp_path: Path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content)
    path.chmod(0o600)
    return str(path)


def test_every_secret_setting_reads_from_a_file(made, tmp_path, monkeypatch):
    values = {
        "SECRET_KEY": SECRET,
        "SECRET_KEY_FALLBACKS": f"{OLD}\n{OLDER}\n",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'from-file.db'}",
        "MAIL_URL": "smtp://127.0.0.1:2525",
        "REDIS_URL": "redis://127.0.0.1:6390/0",
        "METRICS_TOKEN": "metrics-token-from-a-file",
    }
    assert set(values) == set(SECRET_SETTINGS)
    monkeypatch.delenv("HOLDFAST_DATABASE_URL")
    for name, value in values.items():
        # surrounding whitespace and the final newline are not part of the value
        path = secret_file(tmp_path, name.lower(), f"  {value}\n\n")
        monkeypatch.setenv(f"HOLDFAST_{name}_FILE", path)
    app = made()
    assert app.config["SECRET_KEY"] == SECRET
    assert app.config["SECRET_KEY_FALLBACKS"] == [OLD, OLDER]
    assert app.config["DATABASE_URL"] == values["DATABASE_URL"]
    assert app.extensions["holdfast"].database.url == values["DATABASE_URL"]
    assert app.config["MAIL_URL"] == "smtp://127.0.0.1:2525"
    assert app.config["REDIS_URL"] == "redis://127.0.0.1:6390/0"
    assert app.config["METRICS_TOKEN"] == "metrics-token-from-a-file"
    # The token from the file is the one /metrics asks for.
    assert app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert (
        client.get(
            "/metrics", headers={"Authorization": "Bearer metrics-token-from-a-file"}
        ).status_code
        == 200
    )


def test_a_setting_and_its_file_both_set_is_refused(made, tmp_path, monkeypatch):
    monkeypatch.setenv("HOLDFAST_SECRET_KEY", SECRET)
    monkeypatch.setenv("HOLDFAST_SECRET_KEY_FILE", secret_file(tmp_path, "key", SECRET))
    with pytest.raises(
        ConfigError, match="Both HOLDFAST_SECRET_KEY and HOLDFAST_SECRET_KEY_FILE are set"
    ):
        made()
    monkeypatch.delenv("HOLDFAST_SECRET_KEY")
    # MAIL_URL has a default: only a value someone set conflicts with the file
    monkeypatch.setenv("HOLDFAST_MAIL_URL_FILE", secret_file(tmp_path, "mail", "console"))
    assert made().config["MAIL_URL"] == "console"
    monkeypatch.setenv("HOLDFAST_MAIL_URL", "smtp://127.0.0.1:25")
    with pytest.raises(ConfigError, match="HOLDFAST_MAIL_URL and HOLDFAST_MAIL_URL_FILE"):
        made()


def test_a_missing_or_empty_file_is_refused(made, tmp_path, monkeypatch):
    monkeypatch.setenv("HOLDFAST_SECRET_KEY_FILE", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"HOLDFAST_SECRET_KEY_FILE=.*nowhere: cannot read it"):
        made()
    monkeypatch.setenv("HOLDFAST_SECRET_KEY_FILE", secret_file(tmp_path, "empty", "\n"))
    with pytest.raises(ConfigError, match="the file is empty"):
        made()
    monkeypatch.setenv("HOLDFAST_SECRET_KEY_FILE", secret_file(tmp_path, "short", "short\n"))
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        made()


def test_a_dotenv_file_fills_in_and_the_environment_wins(made, tmp_path, monkeypatch):
    Path(".env").write_text(
        "# settings for this node\n"
        f"HOLDFAST_SECRET_KEY={SECRET}\n"
        "HOLDFAST_BASE_URL='https://sessions.example.com'\n"
        "HOLDFAST_COOKIE_SECURE=false\n"
        "HOLDFAST_MAIL_FROM=from-dotenv@example.com\n"
        "OTHER_PROGRAM_SETTING=ignored\n"
    )
    monkeypatch.setenv("HOLDFAST_MAIL_FROM", "from-environment@example.com")
    app = made()
    assert app.config["SECRET_KEY"] == SECRET
    assert app.config["BASE_URL"] == "https://sessions.example.com"
    assert app.config["COOKIE_SECURE"] is False  # parsed like the environment's values
    assert app.config["MAIL_FROM"] == "from-environment@example.com"
    assert "OTHER_PROGRAM_SETTING" not in os.environ  # the process is untouched
    assert "HOLDFAST_SECRET_KEY" not in os.environ


def test_holdfast_env_file_names_the_file_and_must_exist(made, tmp_path, monkeypatch):
    named = tmp_path / "holdfast.env"
    named.write_text(f"HOLDFAST_SECRET_KEY={SECRET}\nHOLDFAST_SECRET_KEY_FALLBACKS={OLD},{OLDER}\n")
    Path(".env").write_text("HOLDFAST_BASE_URL=https://not-read.example.com\n")
    monkeypatch.setenv("HOLDFAST_ENV_FILE", str(named))
    app = made()
    assert app.config["SECRET_KEY"] == SECRET
    assert app.config["SECRET_KEY_FALLBACKS"] == [OLD, OLDER]
    assert app.config["BASE_URL"] != "https://not-read.example.com"
    monkeypatch.setenv("HOLDFAST_ENV_FILE", str(tmp_path / "missing.env"))
    with pytest.raises(
        ConfigError, match=r"HOLDFAST_ENV_FILE=.*missing\.env: there is no such file"
    ):
        made()


def test_a_dotenv_setting_and_a_file_from_the_environment_conflict(made, tmp_path, monkeypatch):
    Path(".env").write_text(f"HOLDFAST_SECRET_KEY={SECRET}\n")
    monkeypatch.setenv("HOLDFAST_SECRET_KEY_FILE", secret_file(tmp_path, "key", OLD))
    with pytest.raises(ConfigError, match="Both HOLDFAST_SECRET_KEY and HOLDFAST_SECRET_KEY_FILE"):
        made()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (f"{OLD},{OLDER}", [OLD, OLDER]),
        (f" {OLD} , {OLDER} ", [OLD, OLDER]),
        (f"{OLD}\n{OLDER}", [OLD, OLDER]),
        (f'["{OLD}", "{OLDER}"]', [OLD, OLDER]),  # JSON, as Flask's env reading parses it
        (f"{OLD},{SECRET},{OLD}", [OLD]),  # the current key and repeats are dropped
        ("", []),
    ],
)
def test_fallbacks_are_a_list_of_keys(made, monkeypatch, given, expected):
    monkeypatch.setenv("HOLDFAST_SECRET_KEY", SECRET)
    monkeypatch.setenv("HOLDFAST_SECRET_KEY_FALLBACKS", given)
    app = made()
    assert app.config["SECRET_KEY_FALLBACKS"] == expected
    sealer = app.extensions["holdfast"].sealer
    assert len(sealer.key_ids) == 1 + len(expected)


def test_a_weak_fallback_is_refused(made, monkeypatch):
    monkeypatch.setenv("HOLDFAST_SECRET_KEY", SECRET)
    monkeypatch.setenv("HOLDFAST_SECRET_KEY_FALLBACKS", f"{OLD},changeme")
    with pytest.raises(ConfigError, match="Each key in HOLDFAST_SECRET_KEY_FALLBACKS"):
        made()
