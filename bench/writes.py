"""Database writes per validated request, for a client that calls once a second (goal:
at most 1/60): one session, an hour of ``GET /auth/verify`` a second apart on a moving
clock, every INSERT/UPDATE/DELETE the app sends to the database counted (testkit.sql
statements_run: engine events and the hot path's plain connections). In-process (the
Flask test client), so the count is exact and the hour takes seconds. Also counted: the
same hour of ``GET /api/auth/session`` (a status poll, which is not activity and should
write nothing).

    .venv/bin/python -m bench writes -- --minutes 60 --backends sqlite,postgresql
"""

from __future__ import annotations

import argparse
import re
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

from app import create_app
from app.clock import FrozenClock
from app.core import accounts
from app.mail import MemoryMailer, plain_text
from bench import _speed as speed
from testkit import databases
from testkit.sql import statements_run, writes_in

GOAL = Fraction(1, 60)


def _verb_and_table(statement: str) -> str:
    """``UPDATE sessions``, ``INSERT events``: what a write statement does, to what."""
    words = statement.split()
    verb = words[0].upper()
    return f"{verb} {words[1] if verb == 'UPDATE' else words[2]}"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench writes")
    parser.add_argument("--minutes", type=int, default=60, help="simulated minutes")
    parser.add_argument("--backends", default="sqlite,postgresql")
    return parser.parse_args(argv)


def count(kind: str, minutes: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="holdfast-bench-") as tmp,
        speed.database(kind, Path(tmp)) as db,
    ):
        clock = FrozenClock(speed.now().replace(microsecond=0))
        outbox = MemoryMailer()
        app = create_app(
            {
                "DATABASE_URL": db.url,
                "SECRET_KEY": speed.SECRET,
                "CLOCK": clock,
                "MAILER": outbox,
                "LOG_LEVEL": "WARNING",
                "COOKIE_SECURE": False,
            },
            instance_path=Path(tmp) / "app",
        )
        services = app.extensions["holdfast"]
        with services.session(write=True) as session:
            tenant = accounts.create_tenant(session, "writes", "Writes", now=clock.now())
            accounts.add_user(session, tenant, "ada@writes.test", now=clock.now())
            idle_timeout = tenant.idle_timeout
            session.commit()
        client = app.test_client()
        challenge = client.post("/api/auth/login", json={"email": "ada@writes.test"}).get_json()
        mail = plain_text(outbox.wait_for(1)[-1])
        code = re.search(r"code is (\d{6})", mail).group(1)  # type: ignore[union-attr]
        made = client.post(
            "/api/auth/verify", json={"challengeId": challenge["challengeId"], "code": code}
        ).get_json()
        headers = {"Authorization": f"Bearer {made['token']}"}

        figures: dict[str, Any] = {"idle_timeout": idle_timeout}
        for path in ("/auth/verify", "/api/auth/session"):
            # a status poll is not activity: polling alone lets the session go idle, so it
            # is followed for less than the idle timeout
            polling = path != "/auth/verify"
            requests = min(minutes, idle_timeout // 60 - 1) * 60 if polling else minutes * 60
            with statements_run(services.database) as statements:
                for _ in range(requests):
                    clock.advance(seconds=1)
                    answer = client.get(path, headers=headers)
                    if answer.status_code != 200:
                        raise RuntimeError(f"{path} answered {answer.status_code}")
            writes = [_verb_and_table(statement) for statement in writes_in(statements)]
            figures[path] = {
                "requests": requests,
                "writes": len(writes),
                "statements": sorted(set(writes)),
            }
        services.database.dispose()
        return figures


def main(argv: list[str]) -> int:
    args = parse(argv)
    results = {}
    for kind in args.backends.split(","):
        if kind == "postgresql" and databases.postgres_bin() is None:
            speed.say("  PostgreSQL is not installed: skipped")
            continue
        results[kind] = count(kind, args.minutes)
        verify = results[kind]["/auth/verify"]
        speed.say(f"  {kind}: {verify['writes']} writes for {verify['requests']} validations")
    lines = [
        "### Database writes per validated request (bench/writes.py)",
        "",
        f"Run {speed.stamp()}; `python -m bench writes -- --minutes {args.minutes}`. One "
        f"session, one request a second for {args.minutes} simulated minutes (a moving "
        "clock, in-process), every INSERT/UPDATE/DELETE counted (engine events and the "
        "hot path's plain connections); the tenant's "
        "default policy (30-minute idle timeout, so `last_seen_at` is written at most once a "
        "minute).",
        "",
        "| database | endpoint | requests | writes | writes per request (goal ≤ 1/60 ≈ 0.0167) "
        "| statements |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for kind, figures in results.items():
        for path in ("/auth/verify", "/api/auth/session"):
            f = figures[path]
            ratio = Fraction(f["writes"], f["requests"])
            mark = " ✓" if ratio <= GOAL else " ✗"
            shown = f"1/{f['requests'] // f['writes']}" if f["writes"] else "0"
            lines.append(
                f"| {kind} | `GET {path}` | {f['requests']:,} | {f['writes']} | "
                f"**{float(ratio):.4f}** ({shown}){mark} | "
                f"{', '.join(f['statements']) or '—'} |"
            )
    markdown = "\n".join(lines)
    speed.write_section("writes", markdown)
    print(markdown)
    return 0
