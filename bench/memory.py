"""Each gunicorn worker's resident memory at 1,000,000 stored sessions after a long run,
and its growth over the run (goal: under 150 MB, and no growth once warm: every cache is
bounded).

wrk validates sessions for ``--minutes`` (10 for the record) with more distinct live
tokens than the verified-token cache holds (so it fills up and evicts the whole time)
while each worker's VmRSS is read every few seconds. "Warm" is the reading after the
first fifth of the run; growth is the last reading minus the warm one.

    .venv/bin/python -m bench memory -- --minutes 10
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import _speed as speed
from testkit.cluster import Servers

GOAL_MB = 150
#: more than KeyRing's cache of verified tokens (10,000), so the cache runs full
TOKENS = 12_000


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench memory")
    parser.add_argument("--minutes", type=float, default=10, help="length of the run")
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument("--backend", default="sqlite")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="holdfast-bench-") as tmp:
        folder = Path(tmp)
        with speed.database(args.backend, folder) as db:
            tokens = speed.seed(db, stored=args.stored, live=TOKENS)
            stored = speed.session_count(db)
            credentials = speed.write_credentials("memory", tokens)
            servers = Servers(folder=folder / "servers")
            servers.folder.mkdir()
            try:
                node = speed.start_node(servers, db.url)
                workers = node.worker_pids()
                samples: dict[int, list[tuple[float, float]]] = {pid: [] for pid in workers}
                seconds = args.minutes * 60
                stop = threading.Event()
                started = time.monotonic()

                def sample() -> None:
                    while not stop.wait(5):
                        for pid in workers:
                            samples[pid].append((time.monotonic() - started, speed.rss_mb(pid)))

                for pid in workers:
                    samples[pid].append((0.0, speed.rss_mb(pid)))
                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                load = speed.wrk(
                    f"{node.url}/auth/verify", seconds=seconds, credentials=credentials
                )
                stop.set()
                sampler.join(timeout=10)
                for pid in workers:
                    samples[pid].append((time.monotonic() - started, speed.rss_mb(pid)))
                cpu = {pid: speed.cpu_seconds([pid]) for pid in workers}
                if load.failed:
                    raise RuntimeError(f"{load.failed} failed requests of {load.requests}")
                alive = set(node.worker_pids())
            finally:
                servers.close()
    if alive != set(workers):
        raise RuntimeError("a worker was restarted during the run; its memory was not followed")
    report = []
    for pid, readings in samples.items():
        warm = next(mb for at, mb in readings if at >= seconds / 5)
        report.append(
            {
                "cpu_seconds": cpu[pid],
                "start_mb": readings[0][1],
                "warm_mb": warm,
                "end_mb": readings[-1][1],
                "max_mb": max(mb for _at, mb in readings),
                "growth_mb": readings[-1][1] - warm,
            }
        )
    return {"workers": report, "requests": load.requests, "rate": load.rate, "stored": stored}


def main(argv: list[str]) -> int:
    args = parse(argv)
    speed.require(speed.WRK, "wrk")
    results = run(args)
    lines = [
        "### Worker memory (bench/memory.py)",
        "",
        f"Run {speed.stamp()}; `python -m bench memory -- --minutes {args.minutes:g}`. "
        f"{args.backend}, {results['stored']:,} stored sessions; gunicorn "
        f"{speed.DEPLOYED_WORKERS} workers x {speed.DEPLOYED_THREADS} thread (as "
        "deploy/gunicorn.conf.py runs a node); wrk for "
        f"{args.minutes:g} minutes on `/auth/verify` rotating over "
        f"{TOKENS:,} live sessions' tokens (more than the 10,000 verified tokens a worker "
        f"caches): {results['requests']:,} validations, {results['rate']:,.0f} req/s. "
        "Resident memory (VmRSS) of each worker, read every 5 s; warm = after the first "
        "fifth of the run. CPU time is each worker's share of the run (the kernel hands "
        "wrk's connections to whichever worker accepts first, not evenly).",
        "",
        "| worker | CPU time (s) | at start (MiB) | warm | after the run (goal < 150) "
        "| highest | growth since warm |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for number, w in enumerate(results["workers"], 1):
        lines.append(
            f"| {number} | {w['cpu_seconds']:,.0f} | {w['start_mb']:.1f} | {w['warm_mb']:.1f} | "
            f"**{w['end_mb']:.1f}** {'✓' if w['end_mb'] < GOAL_MB else '✗'} | "
            f"{w['max_mb']:.1f} | **{w['growth_mb']:+.1f}** |"
        )
    markdown = "\n".join(lines)
    speed.write_section("memory", markdown)
    print(markdown)
    return 0
