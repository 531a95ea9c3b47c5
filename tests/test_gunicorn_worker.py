"""The gunicorn worker deploy/gunicorn.conf.py runs (deploy/gunicorn_worker.py), in a real
gunicorn: with one thread it serves requests on its loop thread, keeps connections alive,
serves pipelined requests without letting them pile up, and is never held by a client that
connects and sends nothing; with more threads it is gthread, where a client that stops
halfway through a request holds only its own thread (with one thread it holds the worker,
until gunicorn's timeout restarts it: nginx sends whole requests)."""

from __future__ import annotations

import importlib.util
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from testkit.cluster import DEPLOY, GUNICORN, Node, Servers
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
