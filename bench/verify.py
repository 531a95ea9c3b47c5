"""The hot path: ``GET /auth/verify`` with a live session against a bare Flask route in the
same app and server (goal: at least 0.80 of it), and the same ratio at 1,000,000 stored
sessions against 1,000 (goal: at least 0.90), on SQLite and on PostgreSQL.

A third route, the bare one plus a single ``SELECT 1`` on the hot path's connections
(bench/_wsgi.py), is measured in the same alternation: its rate over the bare route's is
the ceiling for verify ÷ bare of any session check that reads the database on every
request (as Holdfast's must, so that a revocation holds on the very next request), on the
machine and database measured.

wrk sends each request with the next of 1,000 live sessions' tokens (so the database
lookups spread over 1,000 rows scattered through the table, and the token cache holds
them all, as it would for a node's active users). On PostgreSQL it also measures what the
capacity plan in docs/deploy.md needs: bytes per session row, validations per
application core-second, and hot-path lookups per database core-second (pgbench with the
hot-path query over random ids among all 1,000,000 rows).

    .venv/bin/python -m bench verify -- --seconds 10 --rounds 3 --backends sqlite,postgresql
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench import _speed as speed
from testkit import databases
from testkit.cluster import Servers

GOAL_BARE = 0.80
GOAL_SCALE = 0.90
SMALL, LARGE = 1_000, 1_000_000
LIVE = 1_000

HOT_PATH_SQL = """\
\\set n random(1, {rows})
SELECT id AS sid FROM bench_ids WHERE n = :n \\gset
SELECT * FROM sessions s
  JOIN users u ON u.id = s.user_id
  JOIN tenants t ON t.id = s.tenant_id
  JOIN devices d ON d.id = s.device_id
  WHERE s.id = :sid;
"""


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench verify")
    parser.add_argument("--seconds", type=float, default=10, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per side")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--large", type=int, default=LARGE, help="stored sessions, large run")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: rewrite the docs section from bench/results/verify.json",
    )
    return parser.parse_args(argv)


def measure(
    node_url: str, credentials: Path, args: argparse.Namespace, watch: dict[str, Any]
) -> dict[str, Any]:
    runs = speed.compare(
        [
            speed.Target("bare Flask route", f"{node_url}/bench/bare"),
            speed.Target("one round trip", f"{node_url}/bench/round-trip"),
            speed.Target("/auth/verify", f"{node_url}/auth/verify", credentials, watch=watch),
        ],
        seconds=args.seconds,
        rounds=args.rounds,
    )
    bare, trip, verify = runs["bare Flask route"], runs["one round trip"], runs["/auth/verify"]

    def ratio(side: list[speed.Load], to: list[speed.Load]) -> float:
        return statistics.median(s.rate / t.rate for s, t in zip(side, to, strict=True))

    figures: dict[str, Any] = {
        "bare_rps": speed.median_rate(bare),
        "round_trip_rps": speed.median_rate(trip),
        "verify_rps": speed.median_rate(verify),
        "ratio": ratio(verify, bare),
        # the best verify ÷ bare of any check that asks the database on every request
        "ceiling": ratio(trip, bare),
        "verify_p50_ms": statistics.median(v.p50_ms for v in verify),
        "verify_p99_ms": statistics.median(v.p99_ms for v in verify),
    }
    requests = sum(v.requests for v in verify)
    for name in watch:
        spent = sum(v.cpu.get(name, 0.0) for v in verify)
        figures[f"per_{name}_core_second"] = requests / spent if spent else None
    return figures


def row_size(db: speed.Database) -> dict[str, float]:
    """Bytes per session row on PostgreSQL: table, TOAST and indexes over the row count."""
    with db.engine.connect() as conn:
        rows = conn.scalar(text("SELECT count(*) FROM sessions"))
        total = conn.scalar(text("SELECT pg_total_relation_size('sessions')"))
        heap = conn.scalar(text("SELECT pg_relation_size('sessions')"))
        indexes = conn.scalar(text("SELECT pg_indexes_size('sessions')"))
    return {
        "rows": rows,
        "total_bytes": total,
        "bytes_per_row": total / rows,
        "heap_bytes_per_row": heap / rows,
        "index_bytes_per_row": indexes / rows,
    }


def pgbench_lookups(db: speed.Database, seconds: float, folder: Path) -> dict[str, float]:
    """The hot-path query by random id over every stored session, as fast as PostgreSQL
    answers it (8 clients, prepared statements), with its CPU time."""
    cluster = db.cluster
    assert cluster is not None
    with db.engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS bench_ids"))
        conn.execute(
            text("CREATE TABLE bench_ids AS SELECT row_number() OVER () AS n, id FROM sessions")
        )
        conn.execute(text("ALTER TABLE bench_ids ADD PRIMARY KEY (n)"))
        rows = conn.scalar(text("SELECT count(*) FROM bench_ids"))
    script = folder / "hot_path.sql"
    script.write_text(HOT_PATH_SQL.format(rows=rows))
    server_cpu = speed.postgres_cpu(cluster)
    before = server_cpu()
    result = subprocess.run(
        [
            str(cluster.bin / "pgbench"),
            "-h",
            "127.0.0.1",
            "-p",
            str(cluster.port),
            "-U",
            "postgres",
            "-n",
            "-M",
            "prepared",
            "-c",
            "8",
            "-j",
            "2",
            "-T",
            str(max(1, round(seconds))),
            "-f",
            str(script),
            "holdfast",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + 60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"pgbench failed: {result.stderr or result.stdout}")
    spent = server_cpu() - before
    tps = float(result.stdout.split("tps = ")[1].split()[0])
    transactions = int(
        result.stdout.split("number of transactions actually processed: ")[1]
        .split("\n")[0]
        .split("/")[0]
    )
    with db.engine.begin() as conn:
        conn.execute(text("DROP TABLE bench_ids"))
    return {"lookups_per_second": tps, "lookups_per_db_core_second": transactions / spent}


def run_backend(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    speed.say(f"  {kind}:")
    with tempfile.TemporaryDirectory(prefix="holdfast-bench-") as tmp:
        folder = Path(tmp)
        with speed.database(kind, folder) as db:
            servers = Servers(folder=folder / "servers")
            servers.folder.mkdir()
            try:
                tokens = speed.seed(db, stored=SMALL, live=LIVE)
                credentials = speed.write_credentials(f"verify-{kind}", tokens)
                # One process with one thread (the capacity figures: CPU per validation),
                # and the node as deploy/gunicorn.conf.py runs it (the goal is judged there).
                single = speed.start_node(
                    servers, db.url, workers=speed.SPEED_WORKERS, threads=speed.SPEED_THREADS
                )
                shipped = speed.start_node(servers, db.url, label="shipped")
                watch = {"app": speed.process_cpu(single.worker_pids())}
                shipped_watch = {"app": speed.process_cpu(shipped.worker_pids())}
                if db.cluster is not None:
                    watch["db"] = shipped_watch["db"] = speed.postgres_cpu(db.cluster)
                speed.say(f"   {speed.session_count(db):,} stored sessions")
                small = measure(single.url, credentials, args, watch)
                small_shipped = measure(shipped.url, credentials, args, shipped_watch)
                speed.seed(db, stored=args.large, live=LIVE)
                if db.cluster is not None:
                    with db.engine.connect().execution_options(
                        isolation_level="AUTOCOMMIT"
                    ) as conn:
                        conn.execute(text("VACUUM ANALYZE"))
                large_count = speed.session_count(db)
                speed.say(f"   {large_count:,} stored sessions")
                large = measure(single.url, credentials, args, watch)
                large_shipped = measure(shipped.url, credentials, args, shipped_watch)
                figures: dict[str, Any] = {
                    "command": f"--seconds {args.seconds:g} --rounds {args.rounds}",
                    "when": speed.stamp(),
                    "small": small,
                    "large": large,
                    "shipped": {
                        "workers": speed.DEPLOYED_WORKERS,
                        "threads": speed.DEPLOYED_THREADS,
                        "small": small_shipped,
                        "large": large_shipped,
                        "scale_ratio": large_shipped["ratio"] / small_shipped["ratio"],
                    },
                    "large_count": large_count,
                    "scale_ratio": large["ratio"] / small["ratio"],
                }
                if db.cluster is not None:
                    figures["row_size"] = row_size(db)
                    figures["pgbench"] = pgbench_lookups(db, args.seconds, folder)
                return figures
            finally:
                servers.close()


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "### Hot path: `/auth/verify` (bench/verify.py)",
        "",
        "`python -m bench verify` (one backend: `-- --backends sqlite`). Two nodes on the same "
        "database, measured in turn: **as shipped** (deploy/gunicorn.conf.py's own worker "
        f"count and class: {speed.DEPLOYED_WORKERS} one-thread workers on this machine's "
        f"{speed.DEPLOYED_WORKERS // 2} cores; the goals are judged here), and one process "
        "with one thread (whose CPU time gives the capacity figures; bench/_speed.py, "
        "SPEED_WORKERS, says why one). wrk 2 threads, 32 connections, each request with the "
        f"next of {LIVE:,} live sessions' tokens; medians of alternating runs per side. Runs:",
        "",
        *(
            f"- {kind}: {figures.get('when', 'earlier')}; "
            f"`python -m bench verify -- --backends {kind} {figures.get('command', '')}`"
            for kind, figures in results.items()
        ),
        "",
        "| database | node | stored sessions | bare route req/s | one round trip req/s | "
        "`/auth/verify` req/s | verify ÷ bare (goal ≥ 0.80) | ceiling: round trip ÷ bare | "
        "verify p50 / p99 ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, figures in results.items():
        shipped = figures.get("shipped")
        nodes = [("1 worker x 1 thread", figures)]
        if shipped:
            node = f"as shipped: {shipped['workers']} x {shipped['threads']}"
            nodes.insert(0, (node, shipped))
        for node, measured in nodes:
            for label, count in (("small", SMALL), ("large", figures["large_count"])):
                f = measured[label]
                trip = f"{f['round_trip_rps']:,.0f}" if "round_trip_rps" in f else "not measured"
                ceiling = f"{f['ceiling']:.2f}" if "ceiling" in f else "not measured"
                judged = measured is shipped or not shipped
                mark = (" ✓" if f["ratio"] >= GOAL_BARE else " ✗") if judged else ""
                lines.append(
                    f"| {kind} | {node} | {count:,} | {f['bare_rps']:,.0f} | {trip} | "
                    f"{f['verify_rps']:,.0f} | **{f['ratio']:.2f}**{mark} | {ceiling} | "
                    f"{f['verify_p50_ms']:.1f} / {f['verify_p99_ms']:.1f} |"
                )
    lines += [
        "",
        "The ceiling is what the bare route keeps with one `SELECT 1` on the hot path's "
        "connections added (bench/_wsgi.py): no check that asks the database on every request "
        "can pass more, on this machine and database, than that share of the bare route.",
        "",
        "| database | node | (verify ÷ bare) at 1,000,000 ÷ at 1,000 (goal ≥ 0.90) |",
        "| --- | --- | ---: |",
    ]
    for kind, figures in results.items():
        shipped = figures.get("shipped")
        if shipped:
            ratio = shipped["scale_ratio"]
            lines.append(
                f"| {kind} | as shipped | **{ratio:.2f}** {'✓' if ratio >= GOAL_SCALE else '✗'} |"
            )
        lines.append(f"| {kind} | 1 x 1 | {figures['scale_ratio']:.2f} |")
    pg = results.get("postgresql")
    if pg:
        size, lookups, large = pg["row_size"], pg["pgbench"], pg["large"]
        lines += [
            "",
            "Capacity figures (PostgreSQL, 1,000,000 stored sessions; used by the capacity "
            "plan in docs/deploy.md):",
            "",
            f"- bytes per session row: **{size['bytes_per_row']:.0f}** "
            f"(`pg_total_relation_size('sessions')` = {size['total_bytes'] / 2**20:,.0f} MiB "
            f"over {size['rows']:,} rows: heap {size['heap_bytes_per_row']:.0f}, "
            f"indexes {size['index_bytes_per_row']:.0f})",
            f"- validations per application core-second: "
            f"**{large.get('per_app_core_second') or 0:,.0f}** (`/auth/verify` requests ÷ "
            "CPU seconds of the gunicorn workers during the runs)",
            f"- hot-path lookups per database core-second, as part of `/auth/verify`: "
            f"{large.get('per_db_core_second') or 0:,.0f}",
            f"- hot-path lookups per second, PostgreSQL alone (pgbench, 8 clients, random ids "
            f"over all rows, shares the 2 cores with pgbench): "
            f"**{lookups['lookups_per_second']:,.0f}**; per database core-second "
            f"**{lookups['lookups_per_db_core_second']:,.0f}**",
        ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = parse(argv)
    speed.require(speed.WRK, "wrk")
    # Backends not measured this time keep their last figures (bench/results/verify.json).
    saved = speed.RESULTS / "verify.json"
    results: dict[str, Any] = json.loads(saved.read_text()) if saved.exists() else {}
    for kind in [] if args.report_only else args.backends.split(","):
        if kind == "postgresql" and databases.postgres_bin() is None:
            speed.say("  PostgreSQL is not installed: skipped")
            continue
        started = time.monotonic()
        results[kind] = run_backend(kind, args)
        speed.RESULTS.mkdir(parents=True, exist_ok=True)
        (speed.RESULTS / "verify.json").write_text(json.dumps(results, indent=2))
        speed.say(f"  {kind} done in {time.monotonic() - started:.0f} s")
    speed.RESULTS.mkdir(parents=True, exist_ok=True)
    (speed.RESULTS / "verify.json").write_text(json.dumps(results, indent=2))
    markdown = report(results, args)
    speed.write_section("verify", markdown)
    print(markdown)
    return 0
