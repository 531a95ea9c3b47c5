"""Shared pieces of the speed benchmarks (bench/verify.py, signin.py, writes.py, memory.py,
peer.py): databases seeded in bulk, gunicorn nodes, wrk, CPU and memory readings, and the
"Speed" section of docs/benchmarks.md.

Every figure the benchmarks publish is a ratio of two measurements taken in the same run
on the same machine, alternating the two sides a few times and taking medians, because the
two cores are shared with wrk and with whatever else runs: absolute requests per second
are printed for context only.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import insert, select

from app import create_app, migrate
from app.clock import SystemClock
from app.core import accounts
from app.models import Device, Tenant, User, UserSession, new_id
from testkit import databases
from testkit.cluster import Node, Servers
from testkit.databases import PostgresCluster

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
WRK = "/usr/bin/wrk"
SECRET = "bench-secret-" + "b" * 40
TENANT = "bench"
#: a policy that keeps the benchmark's sessions alive through a long run
POLICY = {"idle_timeout": 8 * 3600, "absolute_lifetime": 24 * 3600, "max_sessions_per_user": 0}
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"
SPEED_HEADING = "## Speed and memory"
SPEED_INTRO = """\
Measured by `make bench` (`.venv/bin/python -m bench`) with wrk against gunicorn
(`deploy/gunicorn.conf.py`, one thread a worker) on 127.0.0.1, on the 2-core machine that also runs
wrk and the database. Every speed goal is judged on a ratio of two measurements taken in
the same run, alternating the two sides and taking medians; requests per second are given
for context only. Each subsection below is rewritten by the module named in it (raw
figures in bench/results/, not kept in git); the last one is written by hand.
"""


def say(message: str) -> None:
    print(message, flush=True)


def now() -> datetime:
    return SystemClock().now()


# --- databases ----------------------------------------------------------------------------


@dataclass
class Database:
    kind: str  # "sqlite" or "postgresql"
    url: str
    cluster: PostgresCluster | None = None
    app: Flask | None = None

    @property
    def engine(self) -> Any:
        assert self.app is not None
        return self.app.extensions["holdfast"].database.engine


@contextmanager
def database(kind: str, folder: Path) -> Iterator[Database]:
    """A migrated database with a signing key: a SQLite file in ``folder``, or a throwaway
    PostgreSQL cluster (testkit/databases.py) stopped at the end."""
    cluster = None
    if kind == "postgresql":
        bin_dir = databases.postgres_bin()
        if bin_dir is None:
            raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
        cluster = PostgresCluster(bin_dir).start()
        cluster.admin('CREATE DATABASE "holdfast"')
        url = cluster.url("holdfast")
    else:
        url = f"sqlite:///{folder / 'holdfast.db'}"
    db = Database(kind, url, cluster)
    try:
        db.app = create_app(
            {
                "DATABASE_URL": url,
                "SECRET_KEY": SECRET,
                "MAIL_URL": "console",
                "LOG_LEVEL": "WARNING",
            },
            instance_path=folder,
        )
        services = db.app.extensions["holdfast"]
        migrate.upgrade(services.database.engine, sealer=services.sealer)
        with services.session(write=True) as session:
            session.add(services.keys.new_key(now()))
            session.commit()
        yield db
    finally:
        if db.app is not None:
            db.app.extensions["holdfast"].close()
        if cluster is not None:
            cluster.stop()


def bench_tenant(db: Database) -> str:
    """The benchmark tenant's id (made on first use, with :data:`POLICY`)."""
    services = db.app.extensions["holdfast"]  # type: ignore[union-attr]
    with services.session(write=True) as session:
        tenant = accounts.tenant_by_slug(session, TENANT)
        if tenant is None:
            tenant = accounts.create_tenant(session, TENANT, "Bench", now=now())
            for name, value in POLICY.items():
                setattr(tenant, name, value)
        session.commit()
        return tenant.id


def seed(db: Database, *, stored: int, live: int, people: int = 10_000) -> list[str]:
    """Make the bench tenant hold ``stored`` sessions in all, ``live`` of them alive and
    used by the benchmark (created first, so the rest are bulk history from
    ``holdfast demo``'s generator). Returns the live sessions' tokens."""
    from app.core.sessions import idle_timeout, lifetime
    from app.demo import seed_bulk  # the same bulk generator as `holdfast demo --sessions`

    tenant_id = bench_tenant(db)
    moment = now()
    rules = {"idle_timeout": idle_timeout, "lifetime": lifetime}
    seed_bulk(
        db.engine, tenant_id, now=moment, users=people, sessions=0, echo=lambda _m: None, **rules
    )
    writer = db.engine.execution_options(holdfast_write=True)
    with writer.connect() as conn:
        mine = conn.execute(
            select(UserSession.id, UserSession.user_id, UserSession.absolute_deadline).where(
                UserSession.tenant_id == tenant_id, UserSession.ip == "198.18.0.1"
            )
        ).all()
        if len(mine) < live:
            owners = conn.execute(
                select(User.id, Device.id)
                .join(Device, Device.user_id == User.id)
                .where(User.tenant_id == tenant_id)
                .order_by(User.id)
            ).all()
            rows = []
            missing = live - len(mine)
            for number in range(missing):
                user_id, device_id = owners[number % len(owners)]
                # last seen spread over the past minute, as for clients in steady use: each
                # is written (touched) once a minute, never all in the same second
                seen = moment - timedelta(seconds=60 * number / missing)
                rows.append(
                    {
                        "id": new_id("sess"),
                        "tenant_id": tenant_id,
                        "user_id": user_id,
                        "device_id": device_id,
                        "created_at": moment,
                        "authenticated_at": moment,
                        "last_seen_at": seen,
                        "idle_deadline": seen + timedelta(seconds=POLICY["idle_timeout"]),
                        "absolute_deadline": moment
                        + timedelta(seconds=POLICY["absolute_lifetime"]),
                        "extend_on_activity": True,
                        # a benchmark address (RFC 2544), so these rows are easy to find
                        "ip": "198.18.0.1",
                        "user_agent": UA,
                        "location": None,
                        "ended_at": None,
                        "end_reason": None,
                    }
                )
            for first in range(0, len(rows), 10_000):
                conn.execute(insert(UserSession), rows[first : first + 10_000])
                conn.commit()
            mine = conn.execute(
                select(UserSession.id, UserSession.user_id, UserSession.absolute_deadline).where(
                    UserSession.tenant_id == tenant_id, UserSession.ip == "198.18.0.1"
                )
            ).all()
    if stored > len(mine):
        started = time.perf_counter()
        seed_bulk(
            db.engine,
            tenant_id,
            now=moment,
            users=people,
            sessions=stored,
            echo=lambda _m: None,
            **rules,
        )
        say(f"  seeded {stored:,} sessions ({db.kind}) in {time.perf_counter() - started:.0f} s")
    keys = db.app.extensions["holdfast"].keys  # type: ignore[union-attr]
    return [
        keys.sign(
            user_id=user_id,
            tenant_id=tenant_id,
            session_id=session_id,
            now=moment,
            expires_at=deadline,
        )
        for session_id, user_id, deadline in mine[:live]
    ]


def session_count(db: Database) -> int:
    from sqlalchemy import func

    with db.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(UserSession)) or 0)


def tenant_of(db: Database) -> Tenant:
    services = db.app.extensions["holdfast"]  # type: ignore[union-attr]
    with services.session() as session:
        tenant = accounts.tenant_by_slug(session, TENANT)
        assert tenant is not None
        return tenant


# --- gunicorn ------------------------------------------------------------------------------


def node_settings(url: str, **extra: str) -> dict[str, str]:
    return {
        "HOLDFAST_DATABASE_URL": url,
        "HOLDFAST_SECRET_KEY": SECRET,
        "HOLDFAST_MAIL_URL": "console",
        "HOLDFAST_COOKIE_SECURE": "false",
        **extra,
    }


#: gunicorn workers and threads for the throughput comparisons (verify, peer): one
#: process with one thread, as deploy/gunicorn.conf.py runs each of its processes. One
#: process, not several: gthread workers share one listening socket, and wrk opens its 32
#: keep-alive connections in a burst that one worker often accepts alone, leaving the
#: others idle for the whole run (seen in 5 of 8 runs of the bare route with two workers,
#: one at 0% CPU): a single run then swings by 2-3x whichever route is measured. With one
#: every run loads the same process; the database and wrk have the other core.
SPEED_WORKERS = 1
SPEED_THREADS = 1


#: What deploy/gunicorn.conf.py runs when nothing overrides it: two single-threaded
#: processes per core. The sign-in and memory runs use it (they measure a node as deployed).
DEPLOYED_WORKERS = 2 * len(os.sched_getaffinity(0))
DEPLOYED_THREADS = 1


def start_node(
    servers: Servers,
    url: str,
    *,
    workers: int = DEPLOYED_WORKERS,
    threads: int = DEPLOYED_THREADS,
    label: str = "bench-node",
    **extra: str,
) -> Node:
    """``gunicorn -c deploy/gunicorn.conf.py bench._wsgi:app`` on a free port, by default
    with the worker and thread counts the file itself would choose."""
    return servers.node(
        node_settings(url, **extra),
        app="bench._wsgi:app",
        workers=workers,
        threads=threads,
        label=label,
    )


# --- wrk -------------------------------------------------------------------------------------

ROTATE = """\
-- Each request carries the next credential from the file in BENCH_CREDENTIALS, sent as
-- the header in BENCH_HEADER with %s replaced; each wrk thread starts at its own place.
local credentials = {}
local header, form = nil, nil
local at = 0
function init(args)
  for line in io.lines(os.getenv("BENCH_CREDENTIALS")) do
    credentials[#credentials + 1] = line
  end
  header, form = os.getenv("BENCH_HEADER"):match("^([^:]+):%s*(.*)$")
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  at = math.random(#credentials)
end
function request()
  at = at % #credentials + 1
  local value = form:gsub("%%s", credentials[at])
  return wrk.format(nil, nil, {[header] = value})
end
"""


@dataclass
class Load:
    """One wrk run."""

    rate: float  # requests per second
    requests: int
    failed: int  # non-2xx/3xx answers and socket errors
    p50_ms: float
    p99_ms: float
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by process group


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s|m|h)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60e3, "h": 3600e3}[unit]


def wrk(
    url: str,
    *,
    seconds: float,
    connections: int = 32,
    threads: int = 2,
    credentials: Path | None = None,
    header: str = "Authorization: Bearer %s",
    watch: dict[str, Callable[[], float]] | None = None,
) -> Load:
    """Run wrk against ``url``; with ``credentials`` (a file, one per line) every request
    carries the next one in ``header``. ``watch`` names CPU readings (process_cpu,
    postgres_cpu) whose difference over the run is reported in ``Load.cpu``."""
    command = [
        WRK,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    env = dict(os.environ)
    if credentials is not None:
        script = RESULTS / "rotate.lua"
        RESULTS.mkdir(parents=True, exist_ok=True)
        script.write_text(ROTATE)
        command += ["-s", str(script)]
        env.update(BENCH_CREDENTIALS=str(credentials), BENCH_HEADER=header)
    before = {name: read() for name, read in (watch or {}).items()}
    result = subprocess.run(
        [*command, url],
        capture_output=True,
        text=True,
        env=env,
        timeout=seconds + 60,
        check=True,
    )
    out = result.stdout
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "last-wrk.txt").write_text(out)
    cpu = {name: read() - before[name] for name, read in (watch or {}).items()}
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    failed = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    for kind in re.findall(r"Socket errors: (.*)", out):
        failed += sum(int(n) for n in re.findall(r"\d+", kind))
    p50 = re.search(r"(?m)^\s+50%\s+(\S+)", out)
    p99 = re.search(r"(?m)^\s+99%\s+(\S+)", out)
    return Load(
        rate,
        requests,
        failed,
        _ms(p50.group(1)) if p50 else 0.0,
        _ms(p99.group(1)) if p99 else 0.0,
        cpu,
    )


def write_credentials(name: str, values: list[str]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.txt"
    path.write_text("\n".join(values) + "\n")
    return path


@dataclass
class Target:
    name: str
    url: str
    credentials: Path | None = None
    header: str = "Authorization: Bearer %s"
    watch: dict[str, Callable[[], float]] = field(default_factory=dict)


def compare(
    targets: list[Target], *, seconds: float, rounds: int = 3, warmup: float = 3.0
) -> dict[str, list[Load]]:
    """Each target loaded ``rounds`` times, the targets taking turns (so a slow moment on
    the shared machine hits them alike). Refuses runs with failed requests: a benchmark
    of 401s would measure nothing."""
    for target in targets:
        wrk(target.url, seconds=warmup, credentials=target.credentials, header=target.header)
    runs: dict[str, list[Load]] = {target.name: [] for target in targets}
    for number in range(rounds):
        for target in targets if number % 2 == 0 else list(reversed(targets)):
            load = wrk(
                target.url,
                seconds=seconds,
                credentials=target.credentials,
                header=target.header,
                watch=target.watch,
            )
            if load.failed:
                raise RuntimeError(
                    f"{target.name}: {load.failed} failed requests of {load.requests}"
                )
            say(f"    {target.name:<28} {load.rate:8.0f} req/s  p50 {load.p50_ms:.1f} ms")
            runs[target.name].append(load)
    return runs


def median_rate(loads: list[Load]) -> float:
    return statistics.median(load.rate for load in loads)


# --- processes -------------------------------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the given processes so far (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def postgres_cpu(cluster: PostgresCluster) -> Callable[[], float]:
    """A reading of the CPU seconds the whole PostgreSQL server has used so far: the
    postmaster, its live backends, and (through the postmaster's ``cutime``/``cstime``)
    every backend that already exited, so connections that come and go count too. A
    backend reaped while its live siblings are being read would count in neither part,
    so a reading is taken again until the postmaster's own part stayed the same across
    it."""
    from testkit.cluster import children_of

    postmaster = int((cluster.folder / "data" / "postmaster.pid").read_text().split()[0])

    def own() -> float:
        fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(value) for value in fields[11:15]) / TICKS

    def reading() -> float:
        while True:
            first = own()
            children = cpu_seconds(children_of(postmaster))
            if own() == first:
                return first + children

    return reading


def process_cpu(pids: list[int]) -> Callable[[], float]:
    """A reading of the CPU seconds the given (long-lived) processes have used so far."""
    return lambda: cpu_seconds(pids)


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores ({cpu}), Python {sys.version.split()[0]}"


def require(path: str, package: str) -> None:
    if not (shutil.which(path) or Path(path).exists()):
        raise SystemExit(f"{path} is missing: apt-get install {package}")


# --- docs/benchmarks.md ----------------------------------------------------------------------


def write_section(name: str, markdown: str) -> None:
    """Put ``markdown`` between this module's markers in docs/benchmarks.md, under the
    Speed heading (made if missing); the rest of the file is left as it is."""
    start, end = f"<!-- bench.{name}: start -->", f"<!-- bench.{name}: end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        if SPEED_HEADING not in text:
            text = text.rstrip("\n") + f"\n\n{SPEED_HEADING}\n\n{SPEED_INTRO}"
        at = text.index(SPEED_HEADING)
        following = re.search(r"(?m)^## ", text[at + len(SPEED_HEADING) :])
        cut = at + len(SPEED_HEADING) + following.start() if following else len(text)
        text = (
            text[:cut].rstrip("\n")
            + "\n\n"
            + block
            + "\n"
            + ("\n" + text[cut:] if cut < len(text) else "")
        )
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def stamp() -> str:
    return f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()}"


def token_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"
