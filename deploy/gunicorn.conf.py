"""gunicorn settings for one Holdfast node: ``gunicorn -c deploy/gunicorn.conf.py wsgi:app``
in a checkout, and what ``holdfast serve`` runs (app/cli/serve.py; the wheel carries this file
as app/deploy/gunicorn.conf.py).

Configure Holdfast itself with HOLDFAST_* environment variables (docs/deploy.md); flags on
the command line override what this file sets (the multi-node test passes ``--bind`` with
a free port, and the benchmarks ``--workers``). Every node of a deployment runs the same
file with the same HOLDFAST_SECRET_KEY, HOLDFAST_DATABASE_URL and HOLDFAST_REDIS_URL.
"""

import os
import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # gunicorn reads this file again on every SIGHUP
    sys.path.insert(0, HERE)
from gunicorn_worker import OneThreadWorker  # noqa: E402 (found through the line above)

# nginx on the same host (or the load balancer's network) talks to this address; never
# expose gunicorn to the internet directly.
bind = os.environ.get("GUNICORN_BIND") or "127.0.0.1:8000"

# Two single-threaded processes per core. A request is mostly Python work (the hot-path
# lookup is one short statement), and threads in one process take turns on the GIL: on
# the 2-core benchmark machine one worker served /auth/verify at 1,098 req/s with one
# thread, 808 with two and 581 with four (SQLite; PostgreSQL 743 / 659 / 609), and the
# bare route lost as much. The second process per core takes over the core while the
# first waits (a PostgreSQL round trip, the SMTP relay after a sign-in). gthread still
# keeps idle keep-alive connections off the worker. WEB_CONCURRENCY and GUNICORN_THREADS
# override the counts (raise threads if your SMTP relay is slow to answer). Cores are
# the ones this process may run on (a container's CPU set), not the host's.
# (An empty variable counts as unset: compose.yaml passes it through when not set.)
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * len(os.sched_getaffinity(0)))
# gthread, serving each request on the worker's loop thread while it has one thread, not
# handing it to a pool thread and back: a third more requests a second on every route
# (deploy/gunicorn_worker.py says why and what else changes).
worker_class = OneThreadWorker
threads = int(os.environ.get("GUNICORN_THREADS") or 1)

# Requests are short; a worker stuck for 30 s is restarted. On SIGTERM, workers finish
# the requests they hold (up to 20 s) before exiting, so a rolling restart drops nothing.
timeout = 30
graceful_timeout = 20
# nginx keeps connections to the nodes open (upstream keepalive); keep ours a bit longer
# than a request gap so neither side closes one the other is about to use.
keepalive = 75

# No periodic worker restarts: every cache in Holdfast is bounded (bench/memory.py measures
# a worker's resident memory over a long run), so there is nothing to recycle.
max_requests = 0

# Holdfast writes its own JSON request log line (request id, tenant, session, status);
# gunicorn's access log would only repeat it.
accesslog = None
errorlog = "-"
loglevel = "info"

# Only the proxy in front may set X-Forwarded-*; Holdfast reads them itself when
# HOLDFAST_TRUSTED_PROXIES is set (werkzeug's ProxyFix), so gunicorn passes them through.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# Worker heartbeats in memory, not on a possibly slow disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 (gunicorn heartbeat files, not data)

# gunicorn 24+ opens a control socket at one fixed path per user; two nodes on one host
# would fight over it. Nodes are managed with signals (systemd, or kill -TERM/-HUP).
control_socket_disable = True

# /metrics adds up every worker's counters (app/web/metrics.py): prometheus-client's
# multiprocess mode, in a folder of this node's. Set before any worker imports
# prometheus_client; a SIGHUP re-read keeps the folder (it is in the environment then).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    import tempfile

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="holdfast-metrics-")


def on_starting(_server: object) -> None:
    """A new node counts from zero: values a previous run left in the folder go."""
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(".db"):
            os.remove(os.path.join(folder, name))


def on_exit(_server: object) -> None:
    """The node stops: a folder this file made in the temp folder goes with it."""
    import shutil
    import tempfile

    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    made = os.path.join(tempfile.gettempdir(), "holdfast-metrics-")
    if folder.startswith(made):
        shutil.rmtree(folder, ignore_errors=True)


def child_exit(_server: object, worker: object) -> None:
    """A worker that exits keeps its counts; its live gauges go (prometheus-client)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
