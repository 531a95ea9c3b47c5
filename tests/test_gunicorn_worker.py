"""The gunicorn worker deploy/gunicorn.conf.py runs (deploy/gunicorn_worker.py), in a real
gunicorn: with one thread it serves requests on its loop thread, keeps connections alive,
serves pipelined requests without letting them pile up, and is never held by a client that
connects and sends nothing; with more threads it is gthread, where a client that stops
halfway through a request holds only its own thread (with one thread it holds the worker,
until gunicorn's timeout restarts it: nginx sends whole requests)."""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.workers.gthread import ThreadWorker

from testkit.cluster import DEPLOY, GUNICORN, Node, Servers, answers, node_env
from testkit.tools import require_tool
from testkit.values import SECRET

HEALTH = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.fixture
def node_settings(tmp_path: Path) -> dict[str, str]:
    require_tool(str(GUNICORN), "the gunicorn worker tests run gunicorn")
    return {
        "HOLDFAST_DATABASE_URL": f"sqlite:///{tmp_path / 'holdfast.db'}",
        "HOLDFAST_SECRET_KEY": SECRET,
        "HOLDFAST_MAIL_URL": "console",
    }


def connect(node: Node) -> socket.socket:
    return socket.create_connection(("127.0.0.1", node.port), timeout=10)


def read_answers(sock: socket.socket, count: int) -> list[bytes]:
    """``count`` HTTP answers from ``sock``: each one's status line."""
    data = b""
    statuses: list[bytes] = []
    while len(statuses) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(statuses)} answers"
            data += chunk
        head, data = data.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in lines
            if line.lower().startswith(b"content-length:")
        )
        while len(data) < length:
            data += sock.recv(65536)
        data = data[length:]
        statuses.append(lines[0])
    return statuses


def healthz_over(sock: socket.socket) -> bytes:
    sock.sendall(HEALTH)
    return read_answers(sock, 1)[0]


def another_client_is_answered(node: Node) -> None:
    """A second client gets its answer within 3 s while the first holds its connection
    (gthread's one pool thread waits up to 5 s for a silent connection's bytes)."""
    with connect(node) as other:
        other.settimeout(3)
        assert healthz_over(other) == b"HTTP/1.1 200 OK"


def test_the_deployed_configuration_runs_the_one_thread_worker(
    servers: Servers, node_settings: dict[str, str]
) -> None:
    node = servers.node(node_settings, threads=1)
    assert "Using worker: OneThreadWorker" in node.tail(200)


def test_one_thread_keeps_a_connection_alive_and_serves_a_thousand_pipelined_requests(
    servers: Servers, node_settings: dict[str, str]
) -> None:
    node = servers.node(node_settings, threads=1)
    with connect(node) as sock:
        assert healthz_over(sock) == b"HTTP/1.1 200 OK"
        assert healthz_over(sock) == b"HTTP/1.1 200 OK"
        # Read ahead of each other, these come back to the worker as bytes already
        # buffered; served one inside the other they would run out of Python's stack.
        sock.sendall(HEALTH * 1000)
        assert read_answers(sock, 1000) == [b"HTTP/1.1 200 OK"] * 1000
        assert healthz_over(sock) == b"HTTP/1.1 200 OK"


def test_one_thread_is_not_held_by_a_client_that_connects_and_sends_nothing(
    servers: Servers, node_settings: dict[str, str]
) -> None:
    node = servers.node(node_settings, threads=1)
    with connect(node) as silent:
        silent.getpeername()
        time.sleep(0.3)  # the connection is the worker's before the next one comes
        another_client_is_answered(node)
        # it is served once it speaks
        assert healthz_over(silent) == b"HTTP/1.1 200 OK"


def test_more_threads_are_gthread_where_a_half_sent_request_holds_only_its_thread(
    servers: Servers, node_settings: dict[str, str]
) -> None:
    node = servers.node(node_settings, threads=2)
    with connect(node) as slow:
        slow.sendall(HEALTH[:20])
        time.sleep(0.3)  # the pool thread is now reading the rest of that request
        another_client_is_answered(node)
        slow.sendall(HEALTH[20:])
        assert read_answers(slow, 1) == [b"HTTP/1.1 200 OK"]


def test_a_stopping_worker_does_not_wait_for_connections_that_never_sent_a_request(
    servers: Servers, node_settings: dict[str, str]
) -> None:
    node = servers.node(node_settings, threads=1)
    assert node.process is not None
    with connect(node) as silent:
        time.sleep(0.3)  # the worker has it, waiting for its first bytes
        started = time.monotonic()
        node.process.send_signal(signal.SIGTERM)
        # kept-alive connections linger 2 s at most; graceful_timeout would be 20 s
        node.process.wait(timeout=10)
        assert time.monotonic() - started < 10
        assert silent.recv(1) == b""  # closed by the worker, not left open


def load_worker_module() -> Any:
    spec = importlib.util.spec_from_file_location("gunicorn_worker", DEPLOY / "gunicorn_worker.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeConn:
    initialized = True
    data_ready = False


def test_one_thread_reports_alive_before_requests_at_most_once_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A turn of the loop may serve many requests (every ready connection): the arbiter
    must hear from the worker between them, or it restarts a busy, healthy worker."""
    module = load_worker_module()
    clock = [100.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: clock[0])
    worker = module.OneThreadWorker.__new__(module.OneThreadWorker)
    worker.inline, worker.serving, worker.last_beat = True, False, 0.0
    beats: list[float] = []
    served: list[bool] = []
    worker.notify = lambda: beats.append(clock[0])
    worker.handle = lambda conn: True
    worker.finish_request = lambda conn, outcome: served.append(outcome.result())
    for step in (0.0, 0.5, 0.5, 0.5, 0.5, 5.0):  # six requests of one turn
        clock[0] += step
        worker.enqueue_req(FakeConn())
    assert served == [True] * 6
    assert beats == [100.0, 101.0, 102.0, 107.0]


# --- without gthread's internals: plain gthread ------------------------------------------------


@pytest.fixture
def made_worker() -> Iterator[Callable[..., Any]]:
    """Make a OneThreadWorker as the arbiter makes it, before it runs (closed after)."""
    made: list[Any] = []

    def make(module: Any, log: logging.Logger) -> Any:
        cfg = Config()
        cfg.set("threads", 1)
        worker = module.OneThreadWorker(1, os.getpid(), [], None, 30, cfg, log)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.tmp.close()


def test_the_installed_gunicorn_has_every_internal_the_worker_uses(made_worker, caplog) -> None:
    module = load_worker_module()
    worker = made_worker(module, logging.getLogger("test.worker"))
    assert module.missing_internals(ThreadWorker, worker) == []
    with caplog.at_level(logging.WARNING, logger="test.worker"):
        worker.choose_mode()
    assert worker.inline and worker.missing == [] and not caplog.records


def test_a_gthread_without_an_internal_is_named(made_worker, monkeypatch) -> None:
    """A copy of gthread's worker class without ``_cap_keepalive`` (as a release that
    renamed it), and gthread itself without a method."""
    module = load_worker_module()
    worker = made_worker(module, logging.getLogger("test.worker"))
    copy = type(
        "ThreadWorker",
        ThreadWorker.__bases__,
        {k: v for k, v in vars(ThreadWorker).items() if k != "_cap_keepalive"},
    )
    assert module.missing_internals(copy, worker) == ["ThreadWorker._cap_keepalive"]

    monkeypatch.delattr(ThreadWorker, "on_pending_socket_readable")
    monkeypatch.delattr(worker, "pending_conns")
    assert module.missing_internals(ThreadWorker, worker) == [
        "ThreadWorker.on_pending_socket_readable",
        "ThreadWorker.pending_conns",
    ]


def test_without_an_internal_the_worker_logs_it_and_is_plain_gthread(
    made_worker, caplog, monkeypatch
):
    module = load_worker_module()
    monkeypatch.delattr(ThreadWorker, "on_pending_socket_readable")
    worker = made_worker(module, logging.getLogger("test.worker"))
    with caplog.at_level(logging.WARNING, logger="test.worker"):
        worker.choose_mode()
    assert not worker.inline
    assert [r.getMessage() for r in caplog.records] == [
        "OneThreadWorker: this gunicorn lacks ThreadWorker.on_pending_socket_readable; "
        "running as plain gthread"
    ]
    handed: list[Any] = []
    monkeypatch.setattr(ThreadWorker, "enqueue_req", lambda self, conn: handed.append(conn))
    conn = FakeConn()
    worker.enqueue_req(conn)  # to gthread's pool, not served on the loop thread
    assert handed == [conn]


class NodeUnder(Node):
    """A node whose gunicorn reads ``config`` (which then reads deploy/gunicorn.conf.py)."""

    def __init__(self, folder: Path, settings: dict[str, str], config: Path) -> None:
        super().__init__(folder, settings, label="node-plain-gthread")
        self.config = config

    def start(self) -> Node:
        command = [str(GUNICORN), "--config", str(self.config), "--bind", self.address]
        self._spawn(
            [*command, "--workers", "1", "--threads", "1", self.app], node_env(self.settings)
        )
        self._wait_ready(lambda: answers(f"{self.url}/healthz"))
        return self


def threads_of(node: Node) -> int:
    [pid] = node.worker_pids()
    return len(os.listdir(f"/proc/{pid}/task"))


def test_a_gunicorn_without_an_internal_runs_plain_gthread_and_says_so(
    servers: Servers, node_settings: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(
        "import runpy\n"
        "from gunicorn.workers import gthread\n"
        "# as a gunicorn that renamed it would be\n"
        "del gthread.ThreadWorker.on_pending_socket_readable\n"
        f"settings = runpy.run_path({str(DEPLOY / 'gunicorn.conf.py')!r})\n"
        "globals().update({k: v for k, v in settings.items() if not k.startswith('__')})\n"
    )
    settings = {**node_settings, "HOLDFAST_MAIL_SENDER": "worker"}  # no sender thread
    ours = servers.node(settings, threads=1)
    plain = servers.add(NodeUnder(servers.folder, settings, config)).start()
    for node in (ours, plain):
        with connect(node) as sock:
            assert healthz_over(sock) == b"HTTP/1.1 200 OK"
            assert healthz_over(sock) == b"HTTP/1.1 200 OK"  # kept alive
    assert "running as plain gthread" not in ours.tail(200)
    assert (
        "OneThreadWorker: this gunicorn lacks ThreadWorker.on_pending_socket_readable; "
        "running as plain gthread"
    ) in plain.tail(200)
    # gthread served the requests on a pool thread; the one-thread worker on its loop
    assert threads_of(plain) == threads_of(ours) + 1
