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


def postgres_cpu(database: str) -> dict[int, float]:
    """CPU seconds (user + system) of the PostgreSQL backends connected to ``database``, by pid.

    A backend's command line is ``postgres: USER DATABASE HOST(PORT) STATE``; other clients of the same server
    (other databases) are left out.
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


def postgres_cpu_since(database: str, before: dict[int, float]) -> float:
    """CPU the backends of ``database`` used since ``before`` (backends that ended meanwhile are not counted)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in postgres_cpu(database).items())


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
    client_cores: float
    load_average: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_wrk(url: str, bodies: Path, seconds: float, connections: int, threads: int, server_pid: int, database: str) -> Measure:
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
    server_before, pg_before, client_before = process_usage(server_pid), postgres_cpu(database), reaped_children_cpu()
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - began
    server_used, pg_cpu = process_usage(server_pid) - server_before, postgres_cpu_since(database, pg_before)
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
        postgres_cores=pg_cpu / wall,
        client_cores=client_cpu / wall,
        load_average=os.getloadavg()[0],
    )


def reaped_children_cpu() -> float:
    """User + system CPU seconds of this process's children that have ended (wrk, once ``run`` has reaped it)."""
    usage = os.times()
    return usage.children_user + usage.children_system
