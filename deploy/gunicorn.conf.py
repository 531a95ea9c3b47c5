"""gunicorn settings for one Holdfast node: ``gunicorn -c deploy/gunicorn.conf.py wsgi:app``.

Configure Holdfast itself with HOLDFAST_* environment variables (docs/deploy.md); flags on
the command line override what this file sets (the multi-node test passes ``--bind`` with
a free port, and the benchmarks ``--workers``). Every node of a deployment runs the same
file with the same HOLDFAST_SECRET_KEY, HOLDFAST_DATABASE_URL and HOLDFAST_REDIS_URL.
"""

import os

# nginx on the same host (or the load balancer's network) talks to this address; never
# expose gunicorn to the internet directly.
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")

# One process per core; each holds a few threads, because a request mostly waits on the
# database (one primary-key lookup on the hot path). WEB_CONCURRENCY overrides the count.
workers = int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 1))
worker_class = "gthread"
threads = 4

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
