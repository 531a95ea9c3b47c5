"""Sign-ins per second, on SQLite and on PostgreSQL: client threads each run the whole
JSON flow (``POST /api/auth/login``, the code read from a real SMTP server's mailbox,
``POST /api/auth/verify`` with the device's id) against gunicorn as fast as it answers.

The client (threads, the SMTP server) runs in this process on the same two cores, so the
figure is what the whole machine does; the bare route's rate, measured in the same run,
is given beside it to compare machines by.

    .venv/bin/python -m bench signin -- --seconds 20 --clients 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from bench import _speed as speed
from testkit import databases
from testkit.cluster import Servers, call, free_port
from testkit.mail import Mailbox

PEOPLE_PER_CLIENT = 50
#: sign-ins a second ÷ the bare route's requests a second, measured on 2026-12-05 with the
#: mail sent inside the request (37.5 against 5,249); the goal is four times that
BEFORE_OUTBOX = 37.5 / 5249
GOAL = 4 * BEFORE_OUTBOX


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench signin")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--backends", default="sqlite,postgresql")
    return parser.parse_args(argv)


def add_people(db: speed.Database, count: int) -> list[str]:
    from app.core import accounts
    from app.models import Tenant

    tenant_id = speed.bench_tenant(db)
    services = db.app.extensions["holdfast"]  # type: ignore[union-attr]
    emails = [f"signin{n:05d}@bench.test" for n in range(count)]
    with services.session(write=True) as session:
        tenant = session.get_one(Tenant, tenant_id)
        tenant.notify_new_device = True
        for email in emails:
            accounts.add_user(session, tenant, email, now=speed.now())
        session.commit()
    return emails


def run(kind: str, args: argparse.Namespace, mailbox: Mailbox, smtp_port: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="holdfast-bench-") as tmp:
        folder = Path(tmp)
        with speed.database(kind, folder) as db:
            emails = add_people(db, args.clients * PEOPLE_PER_CLIENT)
            servers = Servers(folder=folder / "servers")
            servers.folder.mkdir()
            try:
                node = speed.start_node(
                    servers,
                    db.url,
                    HOLDFAST_MAIL_URL=f"smtp://127.0.0.1:{smtp_port}",
                    HOLDFAST_RATELIMIT_CODES="100000 per minute",
                    HOLDFAST_RATELIMIT_CODES_PER_IP="100000 per minute",
                    HOLDFAST_RATELIMIT_CHECKS="100000 per minute",
                    HOLDFAST_RATELIMIT_CHECKS_PER_IP="100000 per minute",
                )
                bare = speed.wrk(f"{node.url}/bench/bare", seconds=5)
                node_cpu = speed.process_cpu(node.worker_pids())
                database_cpu = speed.postgres_cpu(db.cluster) if db.cluster else lambda: 0.0
                cpu_before = (node_cpu(), database_cpu(), time.process_time())
                done: list[float] = []
                failed: list[int] = []
                lock = threading.Lock()
                stop_at = time.monotonic() + args.seconds

                def client(mine: list[str]) -> None:
                    number = 0
                    while time.monotonic() < stop_at:
                        email = mine[number % len(mine)]
                        number += 1
                        started = time.monotonic()
                        before = mailbox.count(email)
                        asked = call(
                            f"{node.url}/api/auth/login", "POST", json_body={"email": email}
                        )
                        if asked.status != 202:
                            with lock:
                                failed.append(asked.status)
                            continue
                        code = mailbox.last_code(email, before + 1)
                        made = call(
                            f"{node.url}/api/auth/verify",
                            "POST",
                            json_body={
                                "challengeId": asked.json()["challengeId"],
                                "code": code,
                                "deviceId": f"bench-device-{email}",
                            },
                        )
                        with lock:
                            if made.status == 201:
                                done.append(time.monotonic() - started)
                            else:
                                failed.append(made.status)

                threads = [
                    threading.Thread(
                        target=client,
                        args=(emails[n * PEOPLE_PER_CLIENT : (n + 1) * PEOPLE_PER_CLIENT],),
                    )
                    for n in range(args.clients)
                ]
                began = time.monotonic()
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(timeout=args.seconds + 60)
                elapsed = time.monotonic() - began
                spent = [
                    after - before
                    for after, before in zip(
                        (node_cpu(), database_cpu(), time.process_time()), cpu_before, strict=True
                    )
                ]
            finally:
                servers.close()
    if failed:
        raise RuntimeError(f"{kind}: {len(failed)} sign-ins failed ({sorted(set(failed))})")
    node_ms, database_ms, client_ms = (1000 * seconds / len(done) for seconds in spent)
    return {
        "sign_ins": len(done),
        "per_second": len(done) / elapsed,
        "p50_ms": statistics.median(done) * 1000,
        "bare_rps": bare.rate,
        # CPU milliseconds per sign-in: the node's workers (mail sending included), the
        # database server's, and this process's (the clients and the SMTP server)
        "node_cpu_ms": node_ms,
        "database_cpu_ms": database_ms,
        "client_cpu_ms": client_ms,
    }


def main(argv: list[str]) -> int:
    args = parse(argv)
    speed.require(speed.WRK, "wrk")
    mailbox = Mailbox()
    smtp_port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    results: dict[str, Any] = {}
    try:
        for kind in args.backends.split(","):
            if kind == "postgresql" and databases.postgres_bin() is None:
                speed.say("  PostgreSQL is not installed: skipped")
                continue
            results[kind] = run(kind, args, mailbox, smtp_port)
            speed.say(f"  {kind}: {results[kind]['per_second']:.1f} sign-ins/s")
    finally:
        controller.stop()
    lines = [
        "### Sign-ins per second (bench/signin.py)",
        "",
        f"Run {speed.stamp()}; `python -m bench signin -- --seconds {args.seconds:g} "
        f"--clients {args.clients}`. {args.clients} client threads, each signing in its own "
        f"{PEOPLE_PER_CLIENT} people in turn through the JSON API (code request, the code "
        "read from a real SMTP server, verify with the device's id), against gunicorn "
        f"{speed.DEPLOYED_WORKERS} workers x {speed.DEPLOYED_THREADS} thread (as "
        "deploy/gunicorn.conf.py runs a node); the clients and the SMTP server share the "
        "machine's cores.",
        "",
        "",
        "Mail leaves through the outbox, after the answer (before: inside the request). The "
        "goal is a ratio to the bare route of the same run, so machines compare: "
        f"sign-ins/s ÷ bare req/s at least 4 x {BEFORE_OUTBOX:.5f} (2026-12-05: 37.5 "
        f"sign-ins/s against 5,249 bare req/s) = **{GOAL:.4f}**.",
        "",
        "| database | sign-ins | sign-ins/s | p50 of one sign-in (ms) "
        "| bare route req/s, same run | sign-ins/s ÷ bare req/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, f in results.items():
        ratio = f["per_second"] / f["bare_rps"]
        lines.append(
            f"| {kind} | {f['sign_ins']:,} | **{f['per_second']:.1f}** | {f['p50_ms']:.0f} | "
            f"{f['bare_rps']:,.0f} | **{ratio:.4f}** {'✓' if ratio >= GOAL else '✗'} "
            f"({ratio / BEFORE_OUTBOX:.1f}x before) |"
        )
    cores = len(os.sched_getaffinity(0))
    lines += [
        "",
        "The ceiling: CPU time per sign-in, in the same runs. The machine has "
        f"{cores} cores; a sign-in costs the node's workers (both requests, and handing "
        "the mail to the relay), the database server, and the clients and SMTP server of "
        "this benchmark. Even with the clients and the SMTP server elsewhere, the node and "
        "its database could not pass cores ÷ (node + database CPU per sign-in):",
        "",
        "| database | node CPU ms / sign-in | database CPU ms | clients + SMTP CPU ms "
        "| ceiling, node and database alone (sign-ins/s) | that ceiling ÷ bare req/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, f in results.items():
        ceiling = cores * 1000 / (f["node_cpu_ms"] + f["database_cpu_ms"])
        lines.append(
            f"| {kind} | {f['node_cpu_ms']:.1f} | {f['database_cpu_ms']:.1f} | "
            f"{f['client_cpu_ms']:.1f} | {ceiling:.0f} | {ceiling / f['bare_rps']:.4f} |"
        )
    markdown = "\n".join(lines)
    speed.write_section("signin", markdown)
    print(markdown)
    return 0
