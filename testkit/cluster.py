"""Real servers for the scale-out tests and the benchmarks: gunicorn nodes, nginx and
redis-server, each on 127.0.0.1 on a free port, each in its own process group so that
stopping (or killing) it takes its children along, and each stopped when the
:class:`Servers` stack closes, also when a test fails half-way.

Nothing here skips or fails a test: the test modules call ``require_tool`` first, so a
missing nginx or redis-server skips, or fails under ``HOLDFAST_REQUIRE_ALL=1``.

The nginx site is ``deploy/nginx.conf`` itself (:func:`render_site` only swaps its
listen address and upstream servers for the test's free ports), and every node runs with
``deploy/gunicorn.conf.py``: what the tests exercise is what docs/deploy.md documents.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
GUNICORN = BIN / "gunicorn"
HOLDFAST = BIN / "holdfast"
NGINX = "/usr/sbin/nginx"
REDIS_SERVER = "/usr/bin/redis-server"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until it holds; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


# --- a small HTTP client (one connection per call, safe from any thread) -------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    #: every header as sent, repeated ones (Set-Cookie) included
    raw_headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    url: str,
    method: str = "GET",
    *,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
    token: str | None = None,
    timeout: float = 10.0,
) -> Reply:
    """One HTTP request; connection errors are raised (OSError), any status is returned."""
    parts = urlsplit(url)
    sent = dict(headers or {})
    body = None
    if json_body is not None:
        body = json.dumps(json_body).encode()
        sent["Content-Type"] = "application/json"
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    sent.setdefault("Connection", "close")
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        raw = response.getheaders()
        return Reply(response.status, {k.lower(): v for k, v in raw}, response.read(), raw)
    except http.client.HTTPException as error:  # cut mid-answer (IncompleteRead, BadStatusLine)
        raise ConnectionError(f"{method} {url}: {error!r}") from error
    finally:
        connection.close()


class Browser:
    """Just enough of a browser for the server-rendered pages: it keeps cookies (one
    host), posts forms, and does not follow redirects."""

    def __init__(self, base_url: str, user_agent: str = "Mozilla/5.0 (X11; Linux x86_64)") -> None:
        self.base_url = base_url
        self.cookies: dict[str, str] = {}
        self.user_agent = user_agent

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> Reply:
        headers = {"User-Agent": self.user_agent}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        parts = urlsplit(self.base_url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            raw = response.getheaders()
            reply = Reply(response.status, {k.lower(): v for k, v in raw}, response.read(), raw)
        finally:
            connection.close()
        for name, value in raw:
            if name.lower() == "set-cookie":
                self._keep(value)
        return reply

    def _keep(self, header: str) -> None:
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            if morsel["max-age"] == "0" or morsel.value == "":
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = morsel.value

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, form: dict[str, str]) -> Reply:
        return self.request("POST", path, form)


class JsonHandler(BaseHTTPRequestHandler):
    """A quiet request handler that answers in JSON: the base of the echoing upstream apps
    the proxy tests put behind nginx and Caddy."""

    def send_json(self, value: Any) -> None:
        body = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


class EchoApp:
    """The application behind nginx's auth_request: answers every GET with the
    X-Holdfast-* headers it was given, as JSON (on 127.0.0.1, a free port)."""

    def __init__(self) -> None:
        class Handler(JsonHandler):
            def do_GET(self) -> None:
                seen = {k: v for k, v in self.headers.items() if k.lower().startswith("x-holdfast")}
                seen["authorization"] = self.headers.get("Authorization")
                self.send_json(seen)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=STOP_TIMEOUT)


def answers(url: str) -> bool:
    try:
        return call(url, timeout=2).status == 200
    except OSError:
        return False


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# --- processes ----------------------------------------------------------------------------


class Server:
    """A child process in its own process group, its output in ``log``."""

    name = "server"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder / f"{self.name}-{self.port}.log"

    def _spawn(
        self, command: list[str], env: dict[str, str] | None = None, *, cwd: Path = ROOT
    ) -> None:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: a stop reaches every child
            )

    def _wait_ready(self, check: Callable[[], bool]) -> None:
        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited at start:\n{self.tail()}")
            return check()

        wait_until(ready, START_TIMEOUT, f"{self.name} on port {self.port}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, signum: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL the whole group at once: a machine losing power, as far as the
        others can tell (no graceful shutdown, open transactions cut off)."""
        self.signal_group(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.signal_group(signal.SIGKILL)  # stray children of a dead leader
            return
        self.signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)
        self.signal_group(signal.SIGKILL)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def node_env(settings: dict[str, str]) -> dict[str, str]:
    """The environment of a node: this one without any HOLDFAST_* setting of the test
    run, plus ``settings`` (HOLDFAST_* names)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLDFAST_")}
    env.pop("GUNICORN_CMD_ARGS", None)
    env.update(settings)
    return env


class Node(Server):
    """``gunicorn -c deploy/gunicorn.conf.py wsgi:app`` with the given HOLDFAST_* env
    (its workers, one thread each unless told), bound to 127.0.0.1 on a free port."""

    name = "node"

    def __init__(
        self,
        folder: Path,
        settings: dict[str, str],
        *,
        app: str = "wsgi:app",
        workers: int = 1,
        threads: int = 1,
        label: str = "node",
    ) -> None:
        self.name = label
        super().__init__(folder)
        self.settings = settings
        self.app = app
        self.workers = workers
        self.threads = threads

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Node:
        command = [
            str(GUNICORN),
            "--config",
            str(DEPLOY / "gunicorn.conf.py"),
            "--bind",
            self.address,
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            self.app,
        ]
        self._spawn(command, node_env(self.settings))
        self._wait_ready(lambda: answers(f"{self.url}/healthz"))
        return self

    def worker_pids(self) -> list[int]:
        """The gunicorn workers (children of the master process)."""
        if self.process is None:
            return []
        return children_of(self.process.pid)


def children_of(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may hold spaces: split after it
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == parent:
            found.append(int(entry.name))
    return sorted(found)


class Redis(Server):
    """redis-server with no persistence, on 127.0.0.1 only."""

    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        command = [
            REDIS_SERVER,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.folder),
        ]
        self._spawn(command)
        self._wait_ready(self.ping)
        return self

    def ping(self) -> bool:
        return self.command("PING") == "+PONG"

    def command(self, *words: str) -> str:
        """One command in Redis's inline protocol; the first reply line."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall((" ".join(words) + "\r\n").encode())
                return sock.recv(65536).decode().split("\r\n")[0]
        except OSError:
            return ""


# --- nginx -----------------------------------------------------------------------------------

NGINX_MAIN = """\
{user}daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {folder}/access.log;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    include {folder}/site.conf;
}}
"""


def render_site(text: str, *, listen: int, upstreams: dict[str, Iterable[str]]) -> str:
    """``deploy/nginx.conf`` with its ``listen`` on 127.0.0.1:``listen`` and each named
    upstream's ``server`` lines replaced by the given addresses (each keeps the options
    the file gives its first server line, e.g. ``max_fails``)."""
    text, count = re.subn(
        r"(?m)^([ \t]*)listen[ \t]+[^;]+;", rf"\1listen 127.0.0.1:{listen};", text
    )
    assert count == 1, "deploy/nginx.conf should have exactly one listen line"
    for name, addresses in upstreams.items():
        block = re.search(rf"upstream\s+{name}\s*\{{(.*?)\n\}}", text, re.S)
        assert block, f"no upstream {name} in deploy/nginx.conf"
        body = block.group(1)
        servers = re.findall(r"(?m)^([ \t]*)server[ \t]+\S+?([ \t][^;]*)?;", body)
        assert servers, f"upstream {name} has no server line"
        indent, options = servers[0][0], servers[0][1] or ""
        lines = "".join(f"{indent}server {address}{options};\n" for address in addresses)
        server_line = re.compile(r"(?m)^[ \t]*server[ \t]+[^;]+;[^\n]*\n?")
        first = server_line.search(body)
        assert first is not None
        # the new lines stand where the first server line stood; the other lines go
        rest = server_line.sub("", body[first.end() :])
        body = body[: first.start()] + lines + rest
        text = text[: block.start(1)] + body + text[block.end(1) :]
    return text


class Nginx(Server):
    """nginx running ``deploy/nginx.conf`` (rendered for the test's ports), in the
    foreground, with every path it writes under its own folder."""

    name = "nginx"

    def __init__(self, folder: Path, upstreams: dict[str, Iterable[str]]) -> None:
        super().__init__(folder)
        self.upstreams = {name: list(addresses) for name, addresses in upstreams.items()}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        self.folder.mkdir(parents=True, exist_ok=True)
        site = render_site(
            (DEPLOY / "nginx.conf").read_text(), listen=self.port, upstreams=self.upstreams
        )
        (self.folder / "site.conf").write_text(site)
        # As root the workers would drop to "nobody", who cannot use a private temp folder.
        user = "user root;\n" if os.geteuid() == 0 else ""
        (self.folder / "nginx.conf").write_text(NGINX_MAIN.format(user=user, folder=self.folder))
        command = [
            NGINX,
            "-p",
            str(self.folder),
            "-c",
            str(self.folder / "nginx.conf"),
            "-e",
            str(self.folder / "error.log"),
        ]
        self._spawn(command)
        self._wait_ready(lambda: port_open(self.port))
        return self

    def tail(self, lines: int = 40) -> str:
        errors = self.folder / "error.log"
        extra = errors.read_text(errors="replace") if errors.exists() else ""
        return super().tail(lines) + "\n" + "\n".join(extra.splitlines()[-lines:])


# --- a stack of servers, closed in reverse order -----------------------------------------


@dataclass
class Servers:
    """Servers started for one test (or one benchmark), stopped by :meth:`close`."""

    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="holdfast-")))
    started: list[Any] = field(default_factory=list)

    def add(self, server: Any) -> Any:
        """Keep ``server`` (anything with ``stop()``) for :meth:`close`; returns it."""
        self.started.append(server)
        return server

    def node(self, settings: dict[str, str], **options: Any) -> Node:
        node = self.add(Node(self.folder, settings, **options))
        return node.start()

    def redis(self) -> Redis:
        return self.add(Redis(self.folder)).start()

    def nginx(self, upstreams: dict[str, Iterable[str]]) -> Nginx:
        return self.add(Nginx(self.folder / f"nginx-{len(self.started)}", upstreams)).start()

    def logs(self) -> str:
        """The last lines of every server's log, for a failure message."""
        return "\n".join(
            f"--- {getattr(s, 'name', s)} ---\n{s.tail()}"
            for s in self.started
            if hasattr(s, "tail")
        )

    def close(self) -> None:
        errors = []
        for server in reversed(self.started):
            try:
                server.stop()
            except Exception as error:  # stop the rest whatever one of them does
                errors.append(error)
        self.started.clear()
        shutil.rmtree(self.folder, ignore_errors=True)
        if errors:
            raise errors[0]


def holdfast(settings: dict[str, str], *args: str, timeout: float = 120.0) -> str:
    """Run the ``holdfast`` command with the given HOLDFAST_* settings; its output."""
    result = subprocess.run(
        [str(HOLDFAST), *args],
        cwd=ROOT,
        env=node_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"holdfast {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout
