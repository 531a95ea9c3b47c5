"""What ``/metrics`` holds, and how it adds up across worker processes and nodes.

* **Counters count events once, where they happen**, and only go up: sign-ins, wrong
  codes, sessions ended by reason, every audit event by kind (counted after the
  transaction that recorded them commits), mail handed to the relay or not, requests
  refused by a rate limit. ``holdfast purge`` deletes rows, never counts. Each node
  counts what its own processes did, so a sum over nodes is the deployment's total.
* **Under gunicorn, every worker's counts are in every scrape**: deploy/gunicorn.conf.py
  points prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) at a folder
  of this node's, each worker writes its values there, and the worker that answers a
  scrape adds them all up. Counters of a worker that was restarted stay counted.
  Without gunicorn (``holdfast run``) the one process's own values are shown.
* **Figures read from the database are gauges named ``holdfast_cluster_*``**: live
  sessions, the mail queue (depth, age of the oldest waiting message, messages given
  up), webhook deliveries waiting or failed. Every node shows the same value: take one
  node's, or ``max()``, never ``sum()``.
* **Request latency** is a histogram by method, route (the URL rule, not the path, so
  ids do not multiply the series) and status.
* **Process metrics** (``process_*``): this process's; under gunicorn, the node's, added
  up over the master and its workers (``holdfast_node_processes`` says how many).
* ``holdfast_build_info`` carries the version and the Python it runs on.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.process_collector import ProcessCollector

from app import signals
from app.core import stats_ops
from app.version import __version__

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


def multiprocess_folder() -> str | None:
    """The folder every worker of this node writes its values to, when gunicorn set it."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """This process's counters, and the scrape that adds up the node's."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self.registry = registry = CollectorRegistry()
        self.requests = Histogram(
            "holdfast_request_duration_seconds",
            "Time to answer a request, by method, route and status",
            ["method", "route", "status"],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.events = Counter(
            "holdfast_events", "Audit events recorded, by kind", ["kind"], registry=registry
        )
        self.sign_ins = Counter(
            "holdfast_sign_ins", "Sessions started (sign-ins)", registry=registry
        )
        self.failed_codes = Counter(
            "holdfast_failed_codes", "Wrong one-time codes entered", registry=registry
        )
        self.sessions_ended = Counter(
            "holdfast_sessions_ended", "Sessions ended, by reason", ["reason"], registry=registry
        )
        self.mail_sent = Counter(
            "holdfast_mail_sent",
            "Mail the relay accepted (sent by web processes)",
            registry=registry,
        )
        self.mail_failures = Counter(
            "holdfast_mail_failed_attempts",
            "Attempts to hand mail to the relay that failed (permanent: refused for good)",
            ["permanent"],
            registry=registry,
        )
        self.mail_given_up = Counter(
            "holdfast_mail_given_up",
            "Mail given up: failed (refused or kept failing) or expired (a code, too late)",
            ["status"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "holdfast_rate_limited",
            "Requests refused by a rate-limit budget, by budget",
            ["budget"],
            registry=registry,
        )
        if multiprocess_folder() is None:
            ProcessCollector(registry=registry)
        database = services.database
        signals.events_committed.connect(self._count_events, sender=database)
        signals.mail_attempted.connect(self._count_mail, sender=database)
        signals.rate_limited.connect(self._count_refusal, sender=database)
        # (method, route, status) -> its histogram, looked up once: prometheus_client's
        # labels() takes a lock and checks its arguments on every call. Bounded by the
        # app's routes, their methods and the statuses they answer.
        self._by_request: dict[tuple[str, str, int], Any] = {}

    # --- counting ---------------------------------------------------------------------

    def _count_events(self, _database: Any, *, events: Iterable[Any]) -> None:
        for event in events:
            self.events.labels(event.kind).inc()
            if event.kind == "session.created":
                self.sign_ins.inc()
            elif event.kind == "code.failed":
                self.failed_codes.inc()
            elif event.kind == "session.ended":
                self.sessions_ended.labels(str(event.details.get("reason", "unknown"))).inc()

    def _count_mail(
        self, _database: Any, *, outcomes: Iterable[Any], settled: Iterable[Any]
    ) -> None:
        for outcome in outcomes:
            if not outcome.attempted:
                continue
            if outcome.error is None:
                self.mail_sent.inc()
            else:
                self.mail_failures.labels(str(outcome.permanent).lower()).inc()
        for row in settled:
            if row.status in ("failed", "expired"):
                self.mail_given_up.labels(row.status).inc()

    def _count_refusal(self, _database: Any, *, budget: str) -> None:
        self.rate_limited.labels(budget).inc()

    def observe_requests(self, app: Flask) -> None:
        requests = self.requests
        by_request = self._by_request

        @app.after_request
        def _observe(response: Response) -> Response:
            started = g.get("request_started")  # set for every request by app.logs
            endpoint = request.endpoint
            if started is not None and endpoint not in ("static", "ops.metrics"):
                rule = request.url_rule
                key = (request.method, rule.rule if rule else "(no route)", response.status_code)
                histogram = by_request.get(key)
                if histogram is None:
                    histogram = by_request[key] = requests.labels(*key)
                histogram.observe(time.perf_counter() - started)
            return response

    # --- the scrape --------------------------------------------------------------------

    def exposition(self) -> bytes:
        folder = multiprocess_folder()
        if folder is None:
            registry = CollectorRegistry()
            registry.register(_Merged([self.registry]))
        else:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=folder)
            registry.register(_NodeProcesses())
        registry.register(_Cluster(self.services))
        registry.register(_BuildInfo())
        return generate_latest(registry)


class _Merged:
    """Another registry's metrics, collected as they are."""

    def __init__(self, registries: list[CollectorRegistry]) -> None:
        self.registries = registries

    def collect(self) -> Iterator[Metric]:
        for registry in self.registries:
            yield from registry.collect()


class _Cluster:
    """The deployment-wide figures, read from the database at scrape time."""

    def __init__(self, services: Any) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        services = self.services
        with services.session() as db:
            figures = stats_ops.figures(db, services.clock.now())
        gauges = (
            ("sessions_live", "Sessions alive now", figures.live_sessions),
            ("mail_queued", "Mail waiting to be sent", figures.mail_queued),
            (
                "mail_oldest_queued_seconds",
                "How long the oldest waiting mail has waited",
                figures.mail_oldest_seconds,
            ),
            (
                "mail_undelivered",
                "Mail given up in the last 24 hours (failed or expired)",
                figures.mail_undelivered,
            ),
            ("webhook_deliveries_queued", "Webhook deliveries waiting", figures.webhooks_queued),
            ("webhook_deliveries_failed", "Webhook deliveries given up", figures.webhooks_failed),
        )
        for name, help_text, value in gauges:
            yield GaugeMetricFamily(
                f"holdfast_cluster_{name}",
                f"{help_text} (the whole deployment, read from the database: the same on "
                "every node, do not add nodes up)",
                value=value,
            )


class _BuildInfo:
    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "holdfast_build_info",
            "The Holdfast release and the Python it runs on (always 1)",
            labels=["version", "python"],
        )
        info.add_metric([__version__, platform.python_version()], 1)
        yield info


class _NodeProcesses:
    """The standard ``process_*`` metrics of every process of this gunicorn node (the
    master, this worker's parent, and each of its children), added up; the start time is
    the master's."""

    def collect(self) -> Iterator[Metric]:
        master = os.getppid()
        pids = [master, *_children(master)]
        totals: dict[str, float] = {}
        started = None
        for pid in pids:
            collector = ProcessCollector(pid=functools.partial(int, pid), registry=None)
            for family in collector.collect():
                for sample in family.samples:
                    if sample.name == "process_start_time_seconds":
                        if pid == master:
                            started = sample.value
                    elif sample.name == "process_max_fds":
                        totals[sample.name] = sample.value
                    else:
                        totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        for name, value in totals.items():
            if name == "process_cpu_seconds_total":
                yield CounterMetricFamily(
                    "process_cpu_seconds", "CPU seconds of the node's processes", value=value
                )
            else:
                yield GaugeMetricFamily(name, f"{name} of the node's processes, added up", value)
        if started is not None:
            yield GaugeMetricFamily(
                "process_start_time_seconds", "When the node's master started", value=started
            )
        yield GaugeMetricFamily(
            "holdfast_node_processes", "Processes of this node (master and workers)", len(pids)
        )


def _children(parent: int) -> list[int]:
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
    return found
