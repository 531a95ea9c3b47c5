"""A peer side by side: Django with django-user-sessions (sessions in the database, with
device and IP, like Holdfast's) serving an authenticated page, against Holdfast's
``/auth/verify`` (goal: Holdfast at least 2x the peer's throughput).

Both run under the same gunicorn settings (deploy/gunicorn.conf.py, with its worker
class from deploy/gunicorn_worker.py, bench._speed.SPEED_WORKERS x SPEED_THREADS) on
SQLite with 1,000 live sessions, and wrk sends each request with the next session's
credential (bearer token / ``sessionid`` cookie), the two servers taking turns. The peer
is installed from PyPI into its own venv (bench/results/peer-venv) on first run and given
its best settings: persistent database connections, and sessions stored with the IP and
user agent wrk sends, so django-user-sessions never rewrites them.

    .venv/bin/python -m bench peer -- --seconds 10 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import _speed as speed
from testkit.cluster import DEPLOY, Server, Servers, answers

GOAL = 2.0
LIVE = 1_000
VENV = speed.RESULTS / "peer-venv"
REQUIREMENTS = ["django>=5.0,<6", "django-user-sessions>=2.0", "gunicorn>=27,<28"]

SETTINGS = """\
SECRET_KEY = "peer-benchmark-" + "x" * 40
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "user_sessions"]
MIDDLEWARE = [
    "user_sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
SESSION_ENGINE = "user_sessions.backends.db"
ROOT_URLCONF = "peerproject.urls"
DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": {database!r},
        "CONN_MAX_AGE": 600,
        "OPTIONS": {{"timeout": 30}},
    }}
}}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
"""

URLS = """\
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.urls import path


@login_required
def whoami(request):
    response = JsonResponse({"valid": True, "user": request.user.pk})
    response["X-User"] = str(request.user.pk)
    response["X-Email"] = request.user.email
    return response


urlpatterns = [path("whoami", whoami)]
"""

WSGI = """\
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peerproject.settings")
application = get_wsgi_application()
"""

SEED = """\
import os, sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peerproject.settings")
django.setup()
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.core.management import call_command
from django.db import connection
from user_sessions.backends.db import SessionStore

call_command("migrate", verbosity=0)
with connection.cursor() as cursor:
    cursor.execute("PRAGMA journal_mode=WAL")
User = get_user_model()
users = User.objects.bulk_create(
    [User(username=f"peer{n}", email=f"peer{n}@bench.test") for n in range(int(sys.argv[1]))]
)
for user in User.objects.all():
    user.set_unusable_password()
    user.save(update_fields=["password"])
    # the address and (absent) user agent wrk sends: the store never needs rewriting
    store = SessionStore(user_agent="", ip="127.0.0.1")
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save(must_create=True)
    print(store.session_key)
"""


class Peer(Server):
    """The Django project under the peer venv's gunicorn, with deploy/gunicorn.conf.py."""

    name = "django"

    def __init__(self, folder: Path, project: Path) -> None:
        super().__init__(folder)
        self.project = project

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Peer:
        command = [
            str(VENV / "bin" / "gunicorn"),
            "--config",
            str(DEPLOY / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(speed.SPEED_WORKERS),
            "--threads",
            str(speed.SPEED_THREADS),
            "--chdir",
            str(self.project),
            "peerproject.wsgi:application",
        ]
        self._spawn(command, {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(self.project)})
        self._wait_ready(lambda: answers(f"{self.url}/whoami") or self._redirects())
        return self

    def _redirects(self) -> bool:
        from testkit.cluster import call

        try:
            return call(f"{self.url}/whoami", timeout=2).status == 302
        except OSError:
            return False


def install() -> str:
    """The peer venv, made on first use; returns the installed versions."""
    python = VENV / "bin" / "python"
    if not python.exists():
        speed.say("  installing Django and django-user-sessions into bench/results/peer-venv")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [
            str(VENV / "bin" / "pip"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *REQUIREMENTS,
        ],
        check=True,
        timeout=600,
    )
    listing = subprocess.run(
        [str(VENV / "bin" / "pip"), "list", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    versions = {p["name"].lower(): p["version"] for p in json.loads(listing)}
    return (
        f"Django {versions.get('django')}, django-user-sessions "
        f"{versions.get('django-user-sessions')}, gunicorn {versions.get('gunicorn')}"
    )


def make_project(folder: Path) -> Path:
    project = folder / "peer"
    package = project / "peerproject"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(SETTINGS.format(database=str(folder / "peer.db")))
    (package / "urls.py").write_text(URLS)
    (package / "wsgi.py").write_text(WSGI)
    (project / "seed.py").write_text(SEED)
    return project


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench peer")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    speed.require(speed.WRK, "wrk")
    versions = install()
    with tempfile.TemporaryDirectory(prefix="holdfast-bench-") as tmp:
        folder = Path(tmp)
        project = make_project(folder)
        seeded = subprocess.run(
            [str(VENV / "bin" / "python"), "seed.py", str(LIVE)],
            cwd=project,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(project)},
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
        cookies = speed.write_credentials("peer-cookies", seeded.stdout.split())
        with speed.database("sqlite", folder) as db:
            tokens = speed.write_credentials("peer-tokens", speed.seed(db, stored=LIVE, live=LIVE))
            servers = Servers(folder=folder / "servers")
            servers.folder.mkdir()
            try:
                node = speed.start_node(
                    servers, db.url, workers=speed.SPEED_WORKERS, threads=speed.SPEED_THREADS
                )
                peer = servers.add(Peer(servers.folder, project)).start()
                runs = speed.compare(
                    [
                        speed.Target("Holdfast /auth/verify", f"{node.url}/auth/verify", tokens),
                        speed.Target(
                            "Django + user_sessions",
                            f"{peer.url}/whoami",
                            cookies,
                            header="Cookie: sessionid=%s",
                        ),
                    ],
                    seconds=args.seconds,
                    rounds=args.rounds,
                )
            finally:
                servers.close()
    ours, theirs = runs["Holdfast /auth/verify"], runs["Django + user_sessions"]
    ratios = [a.rate / b.rate for a, b in zip(ours, theirs, strict=True)]
    ratio = statistics.median(ratios)
    results: dict[str, Any] = {
        "holdfast_rps": speed.median_rate(ours),
        "peer_rps": speed.median_rate(theirs),
        "ratio": ratio,
        "versions": versions,
    }
    (speed.RESULTS / "peer.json").write_text(json.dumps(results, indent=2))
    markdown = "\n".join(
        [
            "### A peer side by side (bench/peer.py)",
            "",
            f"Run {speed.stamp()}; `python -m bench peer -- --seconds {args.seconds:g} "
            f"--rounds {args.rounds}`. {versions}, from PyPI into bench/results/peer-venv. "
            "Both under gunicorn with deploy/gunicorn.conf.py "
            f"({speed.SPEED_WORKERS} worker x {speed.SPEED_THREADS} thread: why, "
            "bench/_speed.py), on "
            f"SQLite, {LIVE:,} live sessions, wrk 2 threads x 32 connections sending the "
            "next session's credential with each request; medians of "
            f"{args.rounds} alternating runs.",
            "",
            "| server | what | req/s |",
            "| --- | --- | ---: |",
            f"| Holdfast | `GET /auth/verify` (bearer token) | {results['holdfast_rps']:,.0f} |",
            "| Django + django-user-sessions | `@login_required` view (session cookie) | "
            f"{results['peer_rps']:,.0f} |",
            "",
            f"Holdfast ÷ Django: **{ratio:.2f}x** (goal ≥ 2x) {'✓' if ratio >= GOAL else '✗'}",
        ]
    )
    speed.write_section("peer", markdown)
    print(markdown)
    return 0
