"""The gunicorn worker deploy/gunicorn.conf.py runs: gthread, serving its requests on the
loop thread itself when it has one thread.

deploy/gunicorn.conf.py runs one thread per process (the reason is written there).
gunicorn's gthread worker then still hands every request from its loop thread, which waits
on the sockets, to its one pool thread and back again: two threads taking turns on the GIL
for every request, the loop thread waiting for it whenever a request arrives while another
runs (docs/benchmarks.md measures it). With one thread, plain HTTP/1.1 and no TLS (nginx
in front terminates TLS), ``OneThreadWorker`` serves each request on the loop thread and is
otherwise gthread:

- kept-alive connections wait on the poller and are closed after ``keepalive`` seconds;
- a new connection is served once its first bytes arrive, so a client that connects and
  sends nothing never holds the loop (gthread's pool thread waits up to 5 s for them);
- bytes a client sent ahead (pipelined requests) go through the loop's queue of callbacks
  instead of being served one inside the other, so such clients take turns;
- it tells gunicorn's arbiter it is alive before each request (at most once a second),
  not only once per turn of the loop, which may serve many requests;
- on SIGTERM, connections that have not sent a request yet are closed within gthread's
  linger for kept-alive ones (2 s) instead of holding the stop for ``graceful_timeout``.

With more threads (``GUNICORN_THREADS``), TLS or HTTP/2 it is gthread, unchanged.

One difference with one thread: the loop cannot report alive while a request runs, so a
request stuck for ``timeout`` seconds gets the worker restarted, as gunicorn's sync worker
does (gthread's loop went on reporting alive while its one pool thread was stuck). A
request is read and its answer written with blocking calls, as every gunicorn worker does,
so a client that stops halfway through sending a request, or stops reading a large answer,
holds the worker until then (with gthread it held the one pool thread for good): the
worker belongs behind nginx, which sends whole requests and reads answers at once.

It builds on gthread's internals of gunicorn 27 (:data:`GTHREAD_INTERNALS`: the poller
callbacks, ``pending_conns``, ``method_queue``, ``_cap_keepalive``), so pyproject.toml pins
gunicorn to 27.x. Each worker process checks at start-up that they are all still there;
when one is missing (a newer gunicorn) it logs a warning naming it and runs as plain
gthread. tests/test_gunicorn_worker.py runs it, ``make test-newest`` against the newest
gunicorn too. A module of its own beside the configuration, importing nothing of Holdfast
(app/internals.py lists it with the app's other uses of library internals), so that the
benchmarks' Django peer runs under the same worker.
"""

from __future__ import annotations

import selectors
import socket
import time
from concurrent.futures import Future
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

#: seconds between two heartbeats sent while serving (the arbiter's timeout is 30 s)
HEARTBEAT = 1.0

#: What of gthread the worker uses beyond its documented settings: ThreadWorker's methods
#: (the worker overrides or calls them), the attributes its ``__init__`` makes, and a
#: connection's.
GTHREAD_INTERNALS = {
    "methods": (
        "enqueue_req",
        "finish_request",
        "handle",
        "on_pending_socket_readable",
        "_cap_keepalive",
        "notify",
    ),
    "attributes": ("method_queue", "pending_conns", "nr_conns", "alive", "poller"),
    "connection": ("initialized", "data_ready", "timeout", "sock"),
}


def missing_internals(
    gthread: object, worker: ThreadWorker, conn_class: type[TConn] = TConn
) -> list[str]:
    """The names of :data:`GTHREAD_INTERNALS` that are gone: ``gthread`` is where the
    methods are looked up (ThreadWorker, or ``super()`` in a subclass that overrides
    some), ``worker`` a worker made but not yet running, ``conn_class`` gthread's
    connection. Empty on the gunicorn this was written for."""
    missing = [f"ThreadWorker.{name}" for name in GTHREAD_INTERNALS["methods"]]
    missing = [name for name in missing if not hasattr(gthread, name.split(".")[1])]
    missing += [
        f"ThreadWorker.{name}"
        for name in GTHREAD_INTERNALS["attributes"]
        if not hasattr(worker, name)
    ]
    if not hasattr(getattr(worker, "method_queue", None), "defer"):
        missing.append("ThreadWorker.method_queue.defer")
    with socket.socket() as sock:  # a connection's attributes exist once it is made
        conn = conn_class(worker.cfg, sock, None, None)
        missing += [
            f"TConn.{name}" for name in GTHREAD_INTERNALS["connection"] if not hasattr(conn, name)
        ]
    return missing


class OneThreadWorker(ThreadWorker):
    def init_process(self) -> None:
        self.choose_mode()
        super().init_process()

    def choose_mode(self) -> None:
        """Serve on the loop thread (``inline``) with one thread, no TLS and no HTTP/2,
        if gthread's internals it relies on are all there; otherwise log which are
        missing and be plain gthread."""
        #: gthread's internals this worker relies on that are gone: then it is plain gthread
        self.missing = missing_internals(super(), self)
        if self.missing:
            self.log.warning(
                "OneThreadWorker: this gunicorn lacks %s; running as plain gthread",
                ", ".join(self.missing),
            )
        self.inline = (
            not self.missing
            and self.cfg.threads == 1
            and not self.cfg.is_ssl
            and "h2" not in self.cfg.http_protocols
        )
        self.serving = False
        self.last_beat = 0.0

    def enqueue_req(self, conn: TConn) -> None:
        if not self.inline:
            super().enqueue_req(conn)
        elif self.serving:
            # Called from finish_request: the client sent its next request ahead.
            self.method_queue.defer(self.enqueue_req, conn)
        elif not (conn.initialized or conn.data_ready):
            self._wait_for_first_bytes(conn)
        else:
            beat = time.monotonic()
            if beat - self.last_beat >= HEARTBEAT:
                self.notify()
                self.last_beat = beat
            self.serving = True
            try:
                self.finish_request(conn, self._served(conn))
            finally:
                self.serving = False

    def _served(self, conn: TConn) -> Future[Any]:
        """gthread's ``handle`` (which answers its own errors), as the finished future
        ``finish_request`` takes from a pool thread."""
        outcome: Future[Any] = Future()
        try:
            outcome.set_result(self.handle(conn))
        except Exception as error:
            outcome.set_exception(error)
        return outcome

    def _wait_for_first_bytes(self, conn: TConn) -> None:
        """What gthread does with a connection whose first bytes did not come in time;
        a stopping worker closes it instead."""
        if not self.alive:
            self.nr_conns -= 1
            conn.close()
            return
        conn.timeout = time.monotonic() + self.cfg.keepalive
        self.pending_conns.append(conn)
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
        )

    def _cap_keepalive(self, deadline: float) -> None:
        """On stopping, connections yet to send a request linger no longer than kept-alive
        ones (one deadline for all keeps ``pending_conns`` in order)."""
        super()._cap_keepalive(deadline)
        if self.missing:
            return  # plain gthread
        for conn in self.pending_conns:
            conn.timeout = min(conn.timeout, deadline)
