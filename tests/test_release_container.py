"""The container image (Containerfile) and the compose stack (compose.yaml), built and run
with Debian's podman and podman-compose: ``make test-release`` (``pytest -m release``;
the default run leaves these out, they take a few minutes).

The base images come from .ci/container-images (debootstrap, and stand-ins for the
official postgres and redis images made from Debian's packages), since no container
registry is reachable on the CI machine; their names are the registry's, so the files
under test are the ones users run.

Mail: the stack runs with HOLDFAST_MAIL_URL=console, and the test reads the sign-in code
from the containers' logs (``podman logs``), the way someone trying the stack would. An
SMTP server on the host would have to listen on the podman bridge's address, not on
127.0.0.1 as every server the tests start does; the SMTP path itself is tested with the
wheel (tests/test_release.py).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import secrets
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.cluster import BIN, ROOT, call, free_port, wait_until
from testkit.tools import require_tool

pytestmark = pytest.mark.release

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = "localhost/holdfast:release-test"
YEAR = 365 * 24 * 3600
#: the build's extra CA certificates (this machine reaches the registries through a proxy
#: with its own CA): passed as a build secret, never into the image
HOST_CA = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))


def podman_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLDFAST_")}
    env.setdefault("CONTAINERS_CONF", str(ROOT / ".ci" / "containers.conf"))
    return env


def podman(*args: str, timeout: float = 120, check: bool = True) -> str:
    """``podman ARGS``; its output (AssertionError with stderr when it fails)."""
    done = subprocess.run(
        ["podman", *args],
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check:
        assert done.returncode == 0, f"podman {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def image() -> str:
    require_tool("podman", "the container tests build and run the image")
    require_tool("debootstrap", "the container tests make their base image")
    made = subprocess.run(
        [str(ROOT / ".ci" / "container-images")],
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert made.returncode == 0, f".ci/container-images:\n{made.stdout}\n{made.stderr}"
    build = ["build", "--format", "docker", "--tag", IMAGE]
    if HOST_CA.is_file():
        build += ["--secret", f"id=ca,src={HOST_CA}"]
    podman(*build, str(ROOT), timeout=1800)
    return IMAGE


def inspect(name: str) -> dict:
    return json.loads(podman("image", "inspect", name))[0]  # type: ignore[no-any-return]


def test_the_image_is_slim_runs_as_a_user_and_carries_no_build_settings(image: str):
    made = inspect(image)
    config = made["Config"]
    assert config["User"] == "holdfast"
    assert config["Entrypoint"] == ["holdfast"]
    assert config["Cmd"] == ["serve", "--migrate"]
    assert "8000/tcp" in config["ExposedPorts"]
    assert "/var/lib/holdfast" in config["Volumes"]
    assert any("/readyz" in part for part in made["Healthcheck"]["Test"])
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["HOLDFAST_DATA_DIR"] == "/var/lib/holdfast"
    assert not [name for name in env if re.match(r"(PIP|NPM|NODE)_|.*CERT", name)]
    # No compilers, no Node, no pip, no build tree, no build secret; the one version.
    found = podman(
        "run", "--rm", "--entrypoint", "sh", image, "-c",
        "id -u; for t in node npm gcc cc make pip pip3; do command -v $t; done;"
        " ls -d /src /dist /opt/build /run/secrets/ca 2>/dev/null; holdfast --version",
    ).split()  # fmt: skip
    assert found[0] != "0"
    assert found[1:] == ["holdfast", VERSION], found


@pytest.fixture
def alone(image: str) -> Iterator[tuple[str, int]]:
    name = f"holdfast-alone-{os.getpid()}"
    port = free_port()
    podman(
        "run", "--detach", "--name", name, "--publish", f"127.0.0.1:{port}:8000",
        "--env", f"HOLDFAST_SECRET_KEY={secrets.token_urlsafe(48)}", image,
    )  # fmt: skip
    try:
        yield name, port
    finally:
        podman("rm", "--force", "--volumes", name, check=False)


def test_the_image_alone_migrates_sqlite_in_its_volume_and_serves(alone: tuple[str, int]):
    name, port = alone
    base = f"http://127.0.0.1:{port}"
    ready(base, name)
    page = call(f"{base}/login")
    assert page.status == 200 and f"Holdfast {VERSION}" in page.text
    for link in re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text):
        answer = call(f"{base}{link}", headers={"Accept-Encoding": "gzip"})
        assert answer.status == 200, link
        assert "immutable" in answer.headers["cache-control"]
        if link.endswith((".css", ".js")):
            assert answer.headers.get("content-encoding") == "gzip", link
            assert gzip.decompress(answer.body)
    assert call(f"{base}/favicon.ico").status == 200
    listing = podman("exec", name, "ls", "/var/lib/holdfast")
    assert "holdfast.db" in listing.split()
    podman("healthcheck", "run", name)  # the image's HEALTHCHECK passes


def ready(base: str, container: str, timeout: float = 120) -> None:
    def answers() -> bool:
        try:
            return call(f"{base}/readyz", timeout=3).status == 200
        except OSError:
            return False

    try:
        wait_until(answers, timeout, f"{container} ready")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{podman('logs', container, check=False)}") from error


# --- the compose stack -------------------------------------------------------------------


class Stack:
    """compose.yaml under podman-compose, as project ``name``."""

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.env = {
            **podman_env(),
            "HOLDFAST_IMAGE": IMAGE,
            "HOLDFAST_SECRET_KEY": secrets.token_urlsafe(48),
            "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
            "HOLDFAST_LISTEN": f"127.0.0.1:{port}",
            "HOLDFAST_BASE_URL": self.base,
            "HOLDFAST_MAIL_URL": "console",
        }
        self.volumes: set[str] = set()

    def compose(self, *args: str, timeout: float = 300) -> str:
        command = [str(BIN / "podman-compose"), "-f", str(ROOT / "compose.yaml"), "-p", self.name]
        done = subprocess.run(
            [*command, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, (
            f"podman-compose {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        )
        return done.stdout

    def container(self, service: str) -> str:
        return f"{self.name}_{service}_1"

    def up(self) -> None:
        self.compose("up", "--detach")
        ready(self.base, self.container("web"))
        for service in ("postgres", "redis", "migrate", "web", "worker"):
            mounts = json.loads(podman("inspect", self.container(service)))[0]["Mounts"]
            self.volumes |= {m["Name"] for m in mounts if m.get("Type") == "volume"}

    def logs(self) -> str:
        """What web and worker printed (console mail goes to their stderr)."""
        said = []
        for service in ("web", "worker"):
            done = subprocess.run(
                ["podman", "logs", self.container(service)],
                env=podman_env(),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            said.append(done.stdout + done.stderr)
        return "".join(said)

    def close(self) -> None:
        subprocess.run(
            [str(BIN / "podman-compose"), "-f", str(ROOT / "compose.yaml"), "-p", self.name,
             "down", "--volumes"],
            cwd=ROOT, env=self.env, capture_output=True, timeout=300, check=False,
        )  # fmt: skip
        for volume in self.volumes:  # the images' anonymous volumes too
            podman("volume", "rm", "--force", volume, check=False)


@pytest.fixture
def stack(image: str) -> Iterator[Stack]:
    require_tool(str(BIN / "podman-compose"), "the compose test runs compose.yaml")
    made = Stack(f"hfrelease{os.getpid()}", free_port())
    try:
        yield made
    finally:
        made.close()


def sign_in(stack: Stack, email: str) -> dict:
    """The JSON API's sign-in, the code read from the containers' logs (console mail)."""
    codes_before = len(re.findall(rf"Mail to {re.escape(email)}", stack.logs()))
    asked = call(f"{stack.base}/api/auth/login", "POST", json_body={"email": email})
    assert asked.status == 202, asked.text
    code: list[str] = []

    def mailed() -> bool:
        found = re.findall(rf"Mail to {re.escape(email)}\n.*?code is (\d{{6}})", stack.logs(), re.S)
        code[:] = found[codes_before:]
        return bool(code)

    wait_until(mailed, 60, f"the sign-in code for {email} in the logs")
    body = {"challengeId": asked.json()["challengeId"], "code": code[0]}
    verified = call(f"{stack.base}/api/auth/verify", "POST", json_body=body)
    assert verified.status == 201, verified.text
    return verified.json()  # type: ignore[no-any-return]


def test_the_compose_stack_signs_in_and_the_session_outlives_down_and_up(stack: Stack):
    stack.up()
    assert "Created tenant acme" in stack.compose(
        "run", "--rm", "web", "tenant", "create", "acme", "--name", "Acme",
        "--admin", "boss@acme.test",
    )  # fmt: skip
    signed = sign_in(stack, "boss@acme.test")
    token, session = signed["token"], signed["sessionId"]
    status = call(f"{stack.base}/api/auth/session", token=token)
    assert status.status == 200 and status.json()["sessionId"] == session
    # The web server runs on PostgreSQL with Redis, as compose.yaml says.
    env = podman("exec", stack.container("web"), "env")
    assert "HOLDFAST_DATABASE_URL=postgresql+psycopg://holdfast:" in env
    assert "@postgres:5432/holdfast" in env and "HOLDFAST_REDIS_URL=redis://redis:6379/0" in env
    assert podman("inspect", "--format", "{{.State.ExitCode}}", stack.container("migrate")) == (
        "0\n"
    )
    assert podman("inspect", "--format", "{{.State.Status}}", stack.container("worker")) == (
        "running\n"
    )

    stack.compose("down")  # the volumes stay
    assert not call_answers(stack.base)
    stack.up()
    again = call(f"{stack.base}/api/auth/session", token=token)
    assert again.status == 200, again.text
    assert again.json()["valid"] is True and again.json()["sessionId"] == session
    page = call(f"{stack.base}/devices", headers={"Authorization": f"Bearer {token}"})
    assert page.status == 200 and "boss@acme.test" in page.text


def call_answers(base: str) -> bool:
    try:
        call(f"{base}/healthz", timeout=2)
        return True
    except OSError:
        return False


# --- docs/deploy.md, section 1, on a fresh Debian 12 with systemd --------------------------

#: a fresh Debian 12 machine: the base image and systemd as PID 1 (a real host has it)
HOST = """\
FROM debian:bookworm-slim
RUN apt-get update \\
 && apt-get install -y --no-install-recommends systemd systemd-sysv dbus \\
 && rm -rf /var/lib/apt/lists/*
CMD ["/sbin/init"]
"""


def guide_script() -> str:
    """Section 1 of docs/deploy.md as one script: its shell blocks in order, except
    certbot (the test's host has no public name), with console mail as the guide says
    for a host without an SMTP relay yet."""
    guide = (ROOT / "docs" / "deploy.md").read_text()
    section = guide[guide.index("## 1. One host") : guide.index("## 2. ")]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    lines = [line for line in "\n".join(blocks).splitlines() if not line.startswith("certbot ")]
    script = "\n".join(lines)
    relay = "HOLDFAST_MAIL_URL=smtp://mail.example.com:587?starttls=1"
    assert relay in script
    return "set -eux\ncd /root\n" + script.replace(relay, "HOLDFAST_MAIL_URL=console") + "\n"


@pytest.fixture
def host(image: str, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A systemd container with the release's wheel in /root, nginx's port published."""
    (tmp_path / "Containerfile").write_text(HOST)
    podman("build", "--tag", "localhost/holdfast-test-host:bookworm", str(tmp_path), timeout=600)
    dist = tmp_path / "dist"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLDFAST_")}
    made = subprocess.run(
        ["make", "dist", f"DIST={dist}"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    (wheel,) = dist.glob("*.whl")
    name, port = f"holdfast-guide-{os.getpid()}", free_port()
    run = ["run", "--detach", "--name", name, "--systemd=always"]
    run += ["--publish", f"127.0.0.1:{port}:80"]
    if HOST_CA.is_file():  # this machine's proxy CA, for pip inside (not part of the guide)
        run += ["--volume", f"{HOST_CA}:/run/host-ca.crt:ro"]
    podman(*run, "localhost/holdfast-test-host:bookworm")
    try:
        podman("cp", str(wheel), f"{name}:/root/{wheel.name}")
        yield name, port
    finally:
        podman("rm", "--force", "--volumes", name, check=False)


def test_the_deploy_guide_takes_a_fresh_debian_to_the_admin_dashboard(
    host: tuple[str, int], tmp_path: Path
):
    name, port = host
    script = tmp_path / "guide.sh"
    script.write_text(guide_script())
    podman("cp", str(script), f"{name}:/root/guide.sh")
    env = ["--env", "DEBIAN_FRONTEND=noninteractive"]
    if HOST_CA.is_file():
        env += ["--env", "PIP_CERT=/run/host-ca.crt"]
    done = subprocess.run(
        ["podman", "exec", *env, name, "bash", "/root/guide.sh"],
        env=podman_env(), capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert '{"status":"ready"}' in done.stdout  # the guide's own check

    # Signed in through nginx as the admin the guide made, the code from the journal.
    base, site = f"http://127.0.0.1:{port}", {"Host": "sessions.example.com"}

    def proxied() -> bool:
        # nginx's reload finishes after `systemctl reload` returns: its old workers (the
        # default site) answer for a moment beside the new ones.
        try:
            return all(
                call(f"{base}/readyz", headers=site, timeout=3).status == 200 for _ in range(10)
            )
        except OSError:
            return False

    wait_until(proxied, 30, "nginx proxying to holdfast-web")
    asked = call(f"{base}/api/auth/login", "POST", json_body={"email": "you@example.com"},
                 headers=site)  # fmt: skip
    assert asked.status == 202, asked.text
    code: list[str] = []

    def mailed() -> bool:
        journal = podman("exec", name, "journalctl", "-u", "holdfast-web", "-u",
                         "holdfast-worker", "--no-pager", "-o", "cat")  # fmt: skip
        code[:] = re.findall(r"code is (\d{6})", journal)
        return bool(code)

    wait_until(mailed, 60, "the sign-in code in the journal")
    verified = call(
        f"{base}/api/auth/verify", "POST", headers=site,
        json_body={"challengeId": asked.json()["challengeId"], "code": code[-1]},
    )  # fmt: skip
    assert verified.status == 201, verified.text
    dashboard = call(f"{base}/admin", headers={**site, "Authorization": "Bearer "
                                               + verified.json()["token"]})  # fmt: skip
    assert dashboard.status == 200 and "Acme: dashboard" in dashboard.text

    # The timers are set, and the audit check reads the same database.
    timers = podman("exec", name, "systemctl", "list-timers", "holdfast-*", "--no-pager")
    assert "holdfast-purge.timer" in timers and "holdfast-audit-verify.timer" in timers
    podman("exec", name, "systemctl", "start", "holdfast-audit-verify")
    checked = podman("exec", name, "journalctl", "-u", "holdfast-audit-verify", "-o", "cat",
                     "--no-pager")  # fmt: skip
    assert re.search(r"acme: [1-9]\d* events verified", checked), checked
    podman("exec", name, "systemctl", "start", "holdfast-purge")
    assert "failed" not in podman("exec", name, "systemctl", "is-failed", "holdfast-*",
                                  check=False)  # fmt: skip
