"""Load for ``bench/api.py``: wrk (Debian's package) with ``api_wrk.lua``, and the CPU each side used meanwhile.

wrk is written in C with an event loop per thread: at the few thousand requests per second measured here one
wrk thread uses a small share of a core (printed with every figure), so on a 2-core machine the servers, not the
client, set the pace. wrk keeps ``connections`` requests in flight (closed loop: a connection sends its next
request when the previous answer is complete), which is what "fixed concurrency" means here. Its latency is
per request, from the write to the complete answer; the percentiles come from wrk's own histogram.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

from server import process_usage

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "api_wrk.lua"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def wrk_binary() -> str:
    """The path of ``wrk``; RuntimeError when it is not installed (``bench/peers/setup_postgraphile.sh`` installs it)."""
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not on PATH: run bench/peers/setup_postgraphile.sh (apt-get install -y wrk)")
    return found


def backend_cpu(database: str) -> dict[int, float]:
    """CPU seconds (user + system) of the live PostgreSQL backends connected to ``database``, by pid.

    A backend's command line is ``postgres: USER DATABASE HOST(PORT) STATE``; other databases are left out.
    """
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
            if title[:1] != ["postgres:"] or title[2:3] != [database]:
                continue
            tail = (entry / "stat").read_text().rpartition(")")[2]
        except (OSError, IndexError):
            continue
        fields = tail.split()
        found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return found


@dataclass(frozen=True)
class PgSnapshot:
    """What the PostgreSQL server had done at one moment, for the database under test."""

    backends: dict[int, float]
    """CPU seconds of each live backend of the database."""
    ended_cpu: float
    """CPU seconds of every backend that has ended, any database (the postmaster's reaped children)."""
    transactions: int
    """Committed and rolled-back transactions of the database (``pg_stat_database``, flushed about every second)."""
    sessions: int
    """Sessions (connections) opened to the database so far."""


class PgWatch:
    """Snapshots of the server through an admin connection to its ``postgres`` database (not the one measured)."""

    def __init__(self, admin_url: str, database: str) -> None:
        self.database = database
        self.conn = psycopg.connect(admin_url, autocommit=True)
        backend = self.conn.execute("SELECT pg_backend_pid()").fetchone()
        assert backend is not None
        self.postmaster = int(Path(f"/proc/{backend[0]}/stat").read_text().rpartition(")")[2].split()[1])

    def snapshot(self) -> PgSnapshot:
        fields = Path(f"/proc/{self.postmaster}/stat").read_text().rpartition(")")[2].split()
        ended = (int(fields[13]) + int(fields[14])) / CLOCK_TICKS  # cutime, cstime
        row = self.conn.execute(
            "SELECT xact_commit + xact_rollback, sessions FROM pg_stat_database WHERE datname = %s", (self.database,)
        ).fetchone()
        assert row is not None
        return PgSnapshot(backend_cpu(self.database), ended, int(row[0]), int(row[1]))

    def close(self) -> None:
        self.conn.close()


@dataclass
class Measure:
    """One wrk run against one server: throughput, latency (ms) and the CPU each party used (cores = s/s)."""

    requests: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    error_detail: dict[str, int]
    server_cores: float
    server_waiting: float
    """Time the server's threads were runnable but waiting for a core, per second (run-queue delay)."""
    postgres_cores: float
    """CPU of the database's backends alive at the end of the run."""
    postgres_ended_cores: float
    """CPU of the backends that ended during the run (any database): connections a server closed and reopened."""
    transactions_per_request: float
    """About (the statistics lag by up to a second): the database's transactions divided by the requests."""
    sessions_opened: int
    """Connections opened to the database during the run (0 for a server that keeps its pool)."""
    client_cores: float
    load_average: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_wrk(url: str, bodies: Path, seconds: float, connections: int, threads: int, server_pid: int, pg: PgWatch) -> Measure:
    """Run wrk for ``seconds`` against ``url`` with the bodies of ``bodies`` (one JSON per line).

    Raises RuntimeError when wrk fails or prints no result line.
    """
    command = [
        wrk_binary(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(SCRIPT),
        url,
        "--",
        str(bodies),
    ]
    server_before, pg_before, client_before = process_usage(server_pid), pg.snapshot(), reaped_children_cpu()
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - began
    server_used, pg_after = process_usage(server_pid) - server_before, pg.snapshot()
    client_cpu = reaped_children_cpu() - client_before
    out, err = done.stdout, done.stderr
    line = next((x for x in out.splitlines() if x.startswith("APIBENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {(err or out)[-1500:]}")
    result = json.loads(line.removeprefix("APIBENCH_JSON "))
    elapsed = result["duration_us"] / 1e6
    errors = {k.removeprefix("errors_"): v for k, v in result.items() if k.startswith("errors_") and v}
    return Measure(
        requests=result["requests"],
        seconds=elapsed,
        requests_per_s=result["requests"] / elapsed,
        p50_ms=result["p50_us"] / 1000,
        p90_ms=result["p90_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        max_ms=result["max_us"] / 1000,
        errors=sum(errors.values()),
        error_detail=errors,
        server_cores=server_used.cpu_s / wall,
        server_waiting=server_used.wait_s / wall,
        postgres_cores=sum(cpu - pg_before.backends.get(pid, 0.0) for pid, cpu in pg_after.backends.items()) / wall,
        postgres_ended_cores=(pg_after.ended_cpu - pg_before.ended_cpu) / wall,
        transactions_per_request=(pg_after.transactions - pg_before.transactions) / max(1, result["requests"]),
        sessions_opened=pg_after.sessions - pg_before.sessions,
        client_cores=client_cpu / wall,
        load_average=os.getloadavg()[0],
    )


def reaped_children_cpu() -> float:
    """User + system CPU seconds of this process's children that have ended (wrk, once ``run`` has reaped it)."""
    usage = os.times()
    return usage.children_user + usage.children_system
