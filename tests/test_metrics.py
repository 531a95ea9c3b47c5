"""/metrics adds up: a node's four gunicorn workers show one count in every scrape, and
counters never go down (app.web.metrics, deploy/gunicorn.conf.py)."""

from __future__ import annotations

import os
import signal
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from app.core import sessions
from app.models import UserSession
from testkit.cluster import GUNICORN, Servers, answers, call, holdfast, wait_until
from testkit.tools import require_tool
from testkit.values import SECRET, START

REQUESTS = 40
HEALTHZ = 'holdfast_request_duration_seconds_count{method="GET",route="/healthz",status="200"}'


def scrape(url: str) -> dict[str, float]:
    """Every sample of a scrape, by its name and labels as the exposition writes them."""
    answer = call(f"{url}/metrics")
    assert answer.status == 200, answer.text
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def metrics_folder_of(pids: list[int]) -> Path:
    """The folder deploy/gunicorn.conf.py made for the node (in the temp folder): the one
    holding files of these worker processes."""
    names = {str(pid) for pid in pids}
    for folder in Path(tempfile.gettempdir()).glob("holdfast-metrics-*"):
        if {path.stem.rsplit("_", 1)[-1] for path in folder.glob("*.db")} & names:
            return folder
    raise AssertionError("no metrics folder holds the workers' values")


def counters(samples: dict[str, float]) -> dict[str, float]:
    return {
        name: value
        for name, value in samples.items()
        if name.split("{")[0].endswith(("_total", "_count", "_sum", "_bucket"))
        and not name.startswith("process_")
    }


def sign_in(url: str, mailbox, email: str) -> str:
    asked = call(f"{url}/api/auth/login", "POST", json_body={"email": email})
    assert asked.status == 202, asked.text
    code = mailbox.last_code(email, mailbox.count(email))
    made = call(
        f"{url}/api/auth/verify",
        "POST",
        json_body={"challengeId": asked.json()["challengeId"], "code": code},
    )
    assert made.status == 201, made.text
    return made.json()["token"]


def test_counts_add_up_over_four_workers_and_never_go_down(
    servers: Servers, database_url, smtp_server, make, services, mailbox
):
    require_tool(str(GUNICORN), "the node runs under gunicorn")
    tenant = make.tenant("metrics")
    for name in ("ann", "bo"):
        make.user(f"{name}@metrics.test", tenant)
    settings = {
        "HOLDFAST_DATABASE_URL": database_url,
        "HOLDFAST_SECRET_KEY": SECRET,
        "HOLDFAST_MAIL_URL": f"smtp://127.0.0.1:{smtp_server[1]}",
        "HOLDFAST_COOKIE_SECURE": "false",
    }
    node = servers.node(settings, workers=4)
    # deploy/gunicorn.conf.py gave the node a folder of its own for the workers' values.
    folder = metrics_folder_of(node.worker_pids())
    started = scrape(node.url).get(HEALTHZ, 0)  # the start-up checks asked /healthz too
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: call(f"{node.url}/healthz").status, range(REQUESTS)))
    # Every worker is replaced (as after a crash or a timeout); the rest go to new ones.
    first = node.worker_pids()
    for pid in first:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: len(set(node.worker_pids()) - set(first)) == 4, 30, "four new workers")
    # A new worker's pid shows before it has made its app; on a busy machine that takes
    # longer than one request's timeout. What is counted here is requests, not speed.
    wait_until(lambda: answers(f"{node.url}/metrics"), 60, "a new worker serving")
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses += list(
            pool.map(lambda _: call(f"{node.url}/healthz", timeout=60).status, range(REQUESTS))
        )
    assert statuses == [200] * 2 * REQUESTS
    # Several processes counted, each its own ...
    writers = {path.stem.rsplit("_", 1)[1] for path in folder.glob("histogram_*.db")}
    assert len(writers) >= 2, writers
    # ... and whichever worker answers a scrape, it shows them all.
    for _ in range(8):
        assert scrape(node.url)[HEALTHZ] == started + 2 * REQUESTS

    tokens = [sign_in(node.url, mailbox, f"{name}@metrics.test") for name in ("ann", "bo")]
    assert call(f"{node.url}/api/auth/logout", "POST", token=tokens[0]).status == 204
    for _ in range(4):
        samples = scrape(node.url)
        assert samples["holdfast_sign_ins_total"] == 2
        assert samples['holdfast_sessions_ended_total{reason="logout"}'] == 1
        assert samples['holdfast_events_total{kind="code.requested"}'] == 2
        assert samples["holdfast_cluster_sessions_live"] == 1
        assert samples["holdfast_node_processes"] == 5  # the master and four workers
        assert samples["process_resident_memory_bytes"] > 0
        [build] = [name for name in samples if name.startswith("holdfast_build_info{")]
        assert 'version="' in build and samples[build] == 1

    # An old ended session (long before this node ran) is purged: no counter goes down.
    with services.session(write=True) as db:
        some = db.scalars(select(UserSession)).first()
        old = UserSession(
            tenant_id=tenant.id,
            user_id=some.user_id,
            device_id=some.device_id,
            created_at=START,
            authenticated_at=START,
            last_seen_at=START,
            idle_deadline=START + timedelta(minutes=30),
            absolute_deadline=START + timedelta(hours=12),
        )
        db.add(old)
        db.flush()
        sessions.end_session(db, old, "logout", now=START + timedelta(minutes=5))
        db.commit()
    before = counters(scrape(node.url))
    output = holdfast(settings, "purge")
    assert "Purged 1 sessions" in output, output
    after = counters(scrape(node.url))
    lower = {
        name: (before[name], after.get(name))
        for name in before
        if after.get(name, 0) < before[name]
    }
    assert lower == {}
