"""The release as a user gets it: ``make dist``, the wheel installed into a fresh
virtualenv outside the checkout, run with nothing but that virtualenv on PATH (no Node,
no checkout on sys.path): ``holdfast db upgrade``, ``holdfast tenant create``,
``holdfast serve``, a sign-in through the pages with real mail, and the static files a
browser then loads. On SQLite, or on a fresh PostgreSQL database when the suite runs on
PostgreSQL.

The container image and compose stack are tests/test_release_container.py.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.mail import plain_text
from testkit.cluster import ROOT, Browser, Server, Servers, answers, call
from testkit.databases import PostgresCluster
from testkit.mail import Mailbox
from testkit.tools import require_tool
from testkit.web import csrf_from

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
#: a year: what a fingerprinted file may be cached for, at the least
YEAR = 365 * 24 * 3600


@dataclass
class Release:
    wheel: Path
    sdist: Path
    venv: Path
    #: where the installed commands run: outside the checkout
    workdir: Path
    data_dir: Path
    env: dict[str, str]

    @property
    def site_packages(self) -> Path:
        return next((self.venv / "lib").glob("python3*/site-packages"))

    def holdfast(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> str:
        """Run the installed ``holdfast``; its output (AssertionError on failure)."""
        result = subprocess.run(
            [str(self.venv / "bin" / "holdfast"), *args],
            cwd=cwd or self.workdir,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"holdfast {' '.join(args)}:\n{result.stderr}"
        return result.stdout


def run(command: list[str], **options: object) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **options)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def release(
    tmp_path_factory: pytest.TempPathFactory,
    smtp_server: tuple[Mailbox, int],
    postgres: PostgresCluster | None,
) -> Iterator[Release]:
    require_tool("npm", "make dist fetches the front-end packages")
    folder = tmp_path_factory.mktemp("release")
    dist = folder / "dist"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLDFAST_")}
    run(["make", "dist", f"DIST={dist}"], cwd=ROOT, env=env, timeout=600)
    (wheel,) = dist.glob("holdfast-*.whl")
    (sdist,) = dist.glob("holdfast-*.tar.gz")
    venv = folder / "venv"
    run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    run([str(venv / "bin" / "pip"), "install", "--quiet", f"{wheel}[postgres]"], timeout=600)

    workdir = folder / "srv"
    workdir.mkdir()
    data_dir = folder / "data"
    _mailbox, smtp_port = smtp_server
    settings = {
        # Only the virtualenv: no Node, no npm, no checkout tools.
        "PATH": str(venv / "bin"),
        "HOME": str(folder),
        "LANG": "C.UTF-8",
        "HOLDFAST_DATA_DIR": str(data_dir),
        "HOLDFAST_MAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        "HOLDFAST_COOKIE_SECURE": "false",  # plain HTTP on 127.0.0.1 in this test
        "HOLDFAST_LOG_FORMAT": "text",
        "WEB_CONCURRENCY": "1",
    }
    if postgres is not None:
        postgres.admin('CREATE DATABASE "installed"')
        settings["HOLDFAST_DATABASE_URL"] = postgres.url("installed")
    yield Release(wheel, sdist, venv, workdir, data_dir, settings)
    if postgres is not None:
        postgres.drop(postgres.url("installed"))


class InstalledServer(Server):
    """``holdfast serve`` of the installed wheel, run from outside the checkout."""

    name = "installed"

    def __init__(self, folder: Path, release: Release) -> None:
        super().__init__(folder)
        self.release = release

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> InstalledServer:
        command = [
            str(self.release.venv / "bin" / "holdfast"),
            "serve",
            "--bind",
            f"127.0.0.1:{self.port}",
        ]
        env = {**self.release.env, "HOLDFAST_BASE_URL": self.url}
        self._spawn(command, env, cwd=self.release.workdir)
        self._wait_ready(lambda: answers(f"{self.url}/readyz"))
        return self


def wheel_names(release: Release) -> set[str]:
    with zipfile.ZipFile(release.wheel) as wheel:
        return set(wheel.namelist())


def test_the_wheel_carries_the_code_templates_static_files_migrations_and_settings(
    release: Release,
):
    names = wheel_names(release)
    expected = {f"app/{p.relative_to(ROOT / 'app').as_posix()}" for p in ROOT.glob("app/**/*.py")}
    for folder in ("templates", "static", "migrations", "deploy"):
        for path in (ROOT / folder).rglob("*"):
            relative = path.relative_to(ROOT / folder).as_posix()
            if path.is_file() and "__pycache__" not in relative and not path.name.startswith("."):
                expected.add(f"app/{folder}/{relative}")
    assert "app/static/vendor/htmx.min.js" in expected  # the npm files are there to check
    assert "app/deploy/gunicorn.conf.py" in expected
    missing = expected - names
    assert not missing, f"not in the wheel: {sorted(missing)}"
    assert "app/static/vendor/.installed" not in names
    # What only the tests and benchmarks use stays out of the wheel.
    assert not {n for n in names if n.startswith(("testkit/", "tests/", "bench/"))}
    # Text assets ship compressed too; images that would not shrink do not.
    for asset in ("vendor/htmx.min.js", "vendor/pico.min.css", "css/app.css"):
        assert f"app/static/{asset}.gz" in names and f"app/static/{asset}.br" in names
    assert "app/static/favicon.ico.gz" not in names
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    with zipfile.ZipFile(release.wheel) as wheel:
        headers = wheel.read(metadata).decode()
        licence = next(n for n in names if n.endswith("licenses/LICENSE"))
        assert "Apache License" in wheel.read(licence).decode()
    assert f"Version: {VERSION}" in headers and "License-Expression: Apache-2.0" in headers


def test_installed_holdfast_runs_from_site_packages_with_no_node(release: Release):
    python = release.venv / "bin" / "python"
    where = subprocess.run(
        [
            str(python),
            "-c",
            "import app, app.paths as p; print(app.__file__, p.STATIC, p.CHECKOUT)",
        ],
        cwd=release.workdir,
        env=release.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert where[0].startswith(str(release.site_packages))
    assert where[1] == str(release.site_packages / "app" / "static") and where[2] == "None"
    for tool in ("node", "npm"):
        assert not any((Path(d) / tool).exists() for d in release.env["PATH"].split(":"))
    assert release.holdfast("--version").strip() == f"holdfast {VERSION}"


def test_a_new_install_is_upgraded_serves_pages_with_their_css_and_htmx_and_signs_in(
    release: Release, mailbox: Mailbox, postgres: PostgresCluster | None
):
    before = sorted(p for p in release.site_packages.rglob("*") if "__pycache__" not in p.parts)
    upgraded = release.holdfast("db", "upgrade")
    assert upgraded.strip()
    created = release.holdfast(
        "tenant", "create", "acme", "--name", "Acme", "--admin", "boss@acme.test"
    )
    assert "acme" in created

    servers = Servers()
    try:
        node = servers.add(InstalledServer(servers.folder, release)).start()
        browser = Browser(node.url)
        page = browser.get("/login")
        assert page.status == 200 and "Sign in" in page.text
        assert f"Holdfast {VERSION}" in page.text  # the footer
        links = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)
        assert any(link.endswith(".css") and "pico" in link for link in links)
        assert any(link.endswith(".js") and "htmx" in link for link in links)
        for link in links:
            check_static(node.url, link, release)
        icon = call(f"{node.url}/favicon.ico")
        assert icon.status == 200 and icon.headers["content-type"] == "image/x-icon"

        # Signed in through the pages, with the code from a real SMTP server.
        asked = browser.post(
            "/login", {"email": "boss@acme.test", "csrf_token": csrf_from(page.text)}
        )
        assert asked.status == 302, asked.text
        code_page = browser.get("/login/code")
        (message,) = mailbox.wait_for("boss@acme.test", timeout=30)
        code = re.search(r"code is (\d{6})", plain_text(message))
        assert code is not None
        signed = browser.post(
            "/login/code", {"code": code[1], "csrf_token": csrf_from(code_page.text)}
        )
        assert signed.status == 302 and signed.headers["location"].endswith("/devices")
        devices = browser.get("/devices")
        assert devices.status == 200 and "boss@acme.test" in devices.text
        assert re.search(r'src="/static/vendor/htmx\.min\.\w{12}\.js"', devices.text)
        dashboard = browser.get("/admin")
        assert dashboard.status == 200 and "Acme" in dashboard.text
    except AssertionError as error:
        raise AssertionError(f"{error}\n{servers.logs()}") from error
    finally:
        servers.close()

    # The instance files are in HOLDFAST_DATA_DIR; nothing was written into site-packages.
    assert (release.data_dir / "secret_key").is_file()
    assert (release.data_dir / "holdfast.db").is_file() == (postgres is None)
    after = sorted(p for p in release.site_packages.rglob("*") if "__pycache__" not in p.parts)
    assert after == before


def check_static(base: str, link: str, release: Release) -> None:
    """``link`` answers as a browser expects of a fingerprinted file: the file's bytes,
    cached for a year as immutable, gzip-compressed when asked (text files)."""
    plain = re.sub(r"\.[0-9a-f]{12}(\.\w+)$", r"\1", link.removeprefix("/static/"))
    shipped = (release.site_packages / "app" / "static" / plain).read_bytes()
    answer = call(f"{base}{link}", headers={"Accept-Encoding": "gzip"})
    assert answer.status == 200, link
    cache = answer.headers["cache-control"]
    assert "immutable" in cache and "public" in cache and "no-store" not in cache
    assert int(re.search(r"max-age=(\d+)", cache)[1]) >= YEAR  # type: ignore[index]
    assert answer.headers["x-content-type-options"] == "nosniff"
    if plain.endswith((".css", ".js", ".svg")):
        assert answer.headers.get("content-encoding") == "gzip", link
        assert "Accept-Encoding" in answer.headers["vary"]
        assert gzip.decompress(answer.body) == shipped
    else:
        assert answer.body == shipped
    # Without the fingerprint: the same bytes, revalidated after a minute.
    unversioned = call(f"{base}/static/{plain}")
    assert unversioned.status == 200 and unversioned.body == shipped
    assert "immutable" not in unversioned.headers["cache-control"]


def test_without_a_data_dir_the_instance_folder_is_in_the_current_directory(release: Release):
    elsewhere = release.workdir.parent / "elsewhere"
    elsewhere.mkdir()
    env = {
        k: v
        for k, v in release.env.items()
        if k not in ("HOLDFAST_DATA_DIR", "HOLDFAST_DATABASE_URL")
    }
    release.holdfast("db", "upgrade", env=env, cwd=elsewhere)
    assert (elsewhere / "instance" / "holdfast.db").is_file()
    assert (elsewhere / "instance" / "secret_key").is_file()
    assert not list(release.site_packages.rglob("secret_key"))
    assert not list(release.site_packages.rglob("*.db"))


def test_the_sdist_is_the_whole_source(release: Release):
    """The wheel was built from the sdist (``python -m build``), so the sdist is complete;
    it also carries the npm files, the tests and the docs."""
    import tarfile

    with tarfile.open(release.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for needed in (
        "static/vendor/htmx.min.js",
        "templates/base.html",
        "migrations/env.py",
        "deploy/gunicorn.conf.py",
        "setup.py",
        "LICENSE",
        "Makefile",
        "tests/test_release.py",
        "testkit/cluster.py",
        "docs/deploy.md",
    ):
        assert needed in names, needed
