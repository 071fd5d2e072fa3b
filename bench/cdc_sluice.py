"""The Sluice side of ``bench/cdc.py``: a generated project with one ``syncs:`` entry, run as ``sluice sync``.

``once()`` runs ``sluice sync PROJECT --once`` (drain what the source has, then exit) and returns its wall time,
exit code and peak RSS (``os.wait4`` of the child: the largest resident set of that process and of any
descendant it waited for, in bytes). ``background()`` runs ``sluice sync PROJECT`` until SIGTERM.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdc_workload import my_url, pg_url

SLUICE = [sys.executable, "-m", "sluice"]
SYNC = "bench"


class SluiceUnavailable(Exception):
    """``sluice sync`` cannot run here (the change-data-capture runtime or a plugin is missing, or it failed)."""


def check_cli() -> None:
    """SluiceUnavailable unless ``sluice sync --help`` works."""
    done = subprocess.run([*SLUICE, "sync", "--help"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line.strip(" │|╭╰─") for line in (done.stderr + done.stdout).splitlines() if line.strip(" │|╭╰─")]
        raise SluiceUnavailable(f"`sluice sync` is not available here: {lines[-1] if lines else done.returncode}")


def write_project(folder: Path, database: str, tables: list[str], schema: str, bus: str | None = None, **sync: Any) -> Path:
    """``folder/sluice.yaml``: connections ``source`` (MariaDB ``database``) and ``target`` (``bench_cdc``), one sync
    ``bench`` of ``tables`` into PostgreSQL schema ``schema``; extra ``sync`` keys go into the entry."""
    folder.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "name": "bench-cdc",
        "connections": {"source": my_url(database), "target": pg_url()},
        "syncs": [{"name": SYNC, "source": "source", "target": "target", "tables": tables, "target_namespace": schema, **sync}],
    }
    if bus:
        config["bus"] = bus
    (folder / "sluice.yaml").write_text(json.dumps(config, indent=2))  # JSON is YAML
    return folder


@dataclass
class OnceResult:
    seconds: float
    peak_rss_bytes: int
    status: dict[str, Any] | None
    cpu_s: float = 0.0
    """User + system CPU seconds of the process (and of descendants it waited for)."""


def read_status(folder: Path) -> dict[str, Any] | None:
    """The sync's status file (``.sluice/syncs/bench*.json``), merged shallowly, or None."""
    files = sorted((folder / ".sluice" / "syncs").glob(f"{SYNC}*.json"))
    merged: dict[str, Any] | None = None
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if merged is None:
            merged = data
        else:
            merged.setdefault("tables", []).extend(data.get("tables", []))
    return merged


def applied(status: dict[str, Any] | None) -> dict[str, int]:
    """Rows applied by operation, summed over the status's tables."""
    out: dict[str, int] = {}
    for table in (status or {}).get("tables", []):
        for op, n in table.get("applied", {}).items():
            out[op] = out.get(op, 0) + int(n)
    return out


def once(
    folder: Path,
    timeout_s: float = 1800,
    bus: str | None = None,
    one_process: bool = False,
    role: str | None = None,
    processes: int = 1,
) -> OnceResult:
    """Run ``sluice sync folder --once``; SluiceUnavailable (with the log's tail) if it fails.

    ``one_process``: capture and apply in one process (``--processes 1``), so the peak RSS is the whole sync's
    (``ru_maxrss`` of ``wait4`` is the largest single process of the tree, not their sum). ``role``: only
    ``capture`` or ``apply`` (``--role``); ``processes``: that many such processes side by side (several
    ``--role apply`` of a partitioned sync share its partitions), the wall time until the last one exits."""
    log = folder / "sync-once.log"
    command = [*SLUICE, "sync", str(folder), "--once"] + (["--bus", bus] if bus else [])
    command += ["--processes", "1"] if one_process else []
    command += ["--role", role] if role else []
    seconds, peak, cpu = 0.0, 0, 0.0
    with log.open("ab") as out:
        started = time.perf_counter()
        running = [subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=folder) for _ in range(processes)]
        deadline = started + timeout_s
        codes = []
        while running:
            for process in list(running):
                pid, wait_status, usage = os.wait4(process.pid, os.WNOHANG)
                if not pid and time.perf_counter() > deadline:
                    process.kill()
                    pid, wait_status, usage = os.wait4(process.pid, 0)
                if pid:
                    running.remove(process)
                    codes.append(os.waitstatus_to_exitcode(wait_status))
                    peak, cpu = max(peak, usage.ru_maxrss * 1024), cpu + usage.ru_utime + usage.ru_stime
            time.sleep(0.01)
        seconds = time.perf_counter() - started
    failed = [code for code in codes if code != 0]
    if failed:
        raise SluiceUnavailable(f"`sluice sync --once` exited {failed[0]}:\n{log.read_text(errors='replace')[-3000:]}")
    return OnceResult(seconds, peak, read_status(folder), cpu)


@contextmanager
def background(folder: Path, bus: str | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``sluice sync folder`` running in the background; SIGTERM (then SIGKILL after 30 s) on exit."""
    log = folder / "sync.log"
    command = [*SLUICE, "sync", str(folder)] + (["--bus", bus] if bus else [])
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=folder)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def log_tail(folder: Path, name: str = "sync.log", chars: int = 3000) -> str:
    path = folder / name
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def own_peak_rss_bytes() -> int:
    """This process's own peak RSS (for context next to the child's)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
