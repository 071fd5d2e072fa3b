"""The scheduler under load: 1,000 schedules firing every minute for 10 simulated minutes (issue 14).

A generated project (one no-op object, ``--schedules`` schedules ``* * * * *`` on it, the embedded bus and the
SQLite state store, or ``--state postgresql://...``) is scheduled by :class:`sluice.scheduling.scheduler.Scheduler`
over a :class:`FakeClock` moved minute by minute: no waiting through real minutes. Runs start with
:class:`sluice.scheduling.starter.CoordinatorStarter`, as ``sluice scheduler`` starts them; their objects are run by one
``sluice worker`` process per stage (``--workers external``, the default: the scheduler's process measured alone) or
by worker threads in the scheduler's process (``--workers in-process``).

Latency is real time: from the moment the fake clock reaches a minute (``clock.set``) to the moment that tick's
``RunStarted`` can be read on ``sluice.events`` (a reader thread follows the topic and stamps each ``RunStarted``
when it sees it). Before moving on to the next minute the bench waits until every run of the minute has finished
(so ``max_active_runs: 1`` refuses nothing unless a run is still going). Printed: ticks expected / fired / missed /
doubled (runs recorded per (schedule, logical date) beyond the first, counted in the state store's run records), the
step's duration per minute, and tick -> ``RunStarted`` p50 / p99 / max (aim: none missed or doubled, p99 <= 1 s).

    python bench/schedules.py                          # 1,000 schedules x 10 minutes, about a minute or two
    python bench/schedules.py --schedules 200 --minutes 3
    python bench/schedules.py --state postgresql://postgres@127.0.0.1:25432/postgres
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from sluice import events as ev  # noqa: E402
from sluice.cli.tuning import tune_gc  # noqa: E402
from sluice.project.load import load_project  # noqa: E402
from sluice.runtime.run import WorkersMode, open_backends  # noqa: E402
from sluice.scheduling.scheduler import FakeClock, Scheduler  # noqa: E402
from sluice.scheduling.starter import CoordinatorStarter  # noqa: E402


def write_project(folder: Path, schedules: int, state: str | None) -> Path:
    lines = ["name: schedbench", "objects:", "  - {id: 1001}"]
    if state:
        lines.append(f"state: {state}")
    lines.append("schedules:")
    lines += [f"  s{i:04d}: {{cron: '* * * * *', targets: [1001]}}" for i in range(schedules)]
    path = folder / "sluice.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class StartedReader:
    """Follows ``sluice.events`` from its end and stamps each ``RunStarted`` (run id -> perf_counter) when seen."""

    def __init__(self, bus: object) -> None:
        self.bus = bus
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._offset = bus.end_offset(ev.EVENTS_TOPIC)  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            messages = self.bus.read(ev.EVENTS_TOPIC, self._offset, 5000)  # type: ignore[attr-defined]
            if not messages:
                time.sleep(0.001)
                continue
            now = time.perf_counter()
            for message in messages:
                if b"RunStarted" in message.value:
                    event = ev.decode(message.value)
                    if isinstance(event, ev.RunStarted):
                        self.seen[event.run_id] = now
            self._offset = messages[-1].offset + 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def wait(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.002)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--state", help="state store URL (default: SQLite beside the generated project)")
    parser.add_argument("--max-loops", type=int, default=32, help="coordinator loops at once (CoordinatorStarter)")
    parser.add_argument(
        "--workers",
        choices=["in-process", "external"],
        default="external",
        help="external (default): one `sluice worker` process per stage, as `sluice scheduler --workers external` "
        "runs beside them; in-process: worker threads in the scheduler's process",
    )
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="schedbench-"))
    try:
        project = load_project(write_project(folder, args.schedules, args.state))
        tune_gc()  # as `sluice scheduler` does
        start = datetime(2026, 1, 1, tzinfo=UTC)
        clock = FakeClock(start + timedelta(seconds=30))
        latencies: list[float] = []
        step_s: list[float] = []
        fired = missed = 0
        workers: list[subprocess.Popen[bytes]] = []
        if args.workers == "external":
            env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
            for stage in project.stages:
                command = [sys.executable, "-m", "sluice", "worker", str(folder), "--stage", stage.name, "--log-level", "warning"]
                workers.append(subprocess.Popen(command, env=env))
        with open_backends(project) as backends:
            reader = StartedReader(backends.bus)
            mode: WorkersMode = "external" if args.workers == "external" else "in-process"
            starter = CoordinatorStarter(project, backends, workers=mode, max_loops=args.max_loops)
            scheduler = Scheduler(project, backends.state, starter, clock=clock, publish=starter.publish)
            scheduler.step()  # first sight: each schedule's baseline
            began = time.perf_counter()
            for minute in range(1, args.minutes + 1):
                clock.set(start + timedelta(minutes=minute))
                tick_at = time.perf_counter()
                report = scheduler.step()
                step_s.append(time.perf_counter() - tick_at)
                fired += len(report.fired)
                missed += len(report.missed)
                run_ids = [t.run_id for t in report.fired if t.run_id]
                wait(lambda: all(r in reader.seen for r in run_ids), 300, f"minute {minute}'s RunStarted events")  # noqa: B023
                latencies += [reader.seen[r] - tick_at for r in run_ids]
                wait(lambda: starter.active == 0, 600, f"minute {minute}'s runs to finish")
                print(
                    f"minute {minute:2d}: fired {len(report.fired)}, missed {len(report.missed)}, step {step_s[-1]:.3f} s, "
                    f"last RunStarted {max(reader.seen[r] for r in run_ids) - tick_at:.3f} s after the tick",
                    flush=True,
                )
            total_s = time.perf_counter() - began
            starter.close()
            reader.stop()
            runs = backends.state.list_runs(project.name, limit=args.schedules * (args.minutes + 1))
            per_tick = Counter((r.options.get("schedule"), r.options.get("logical_date")) for r in runs)
            doubled = sum(n - 1 for n in per_tick.values() if n > 1)
            statuses = Counter(r.status for r in runs)
        for worker in workers:
            worker.terminate()
            worker.wait(30)
        expected = args.schedules * args.minutes
        print()
        where = backends.state.url.split("@")[-1]
        print(f"schedules {args.schedules} x {args.minutes} simulated minutes, {args.workers} workers, state {where}")
        print(f"ticks expected {expected}, fired {fired}, missed {missed}, doubled {doubled}; runs {dict(statuses)}")
        print(
            f"tick -> RunStarted: p50 {percentile(latencies, 0.5):.3f} s, p99 {percentile(latencies, 0.99):.3f} s, "
            f"max {max(latencies):.3f} s; step (record ticks + start runs) median {statistics.median(step_s):.3f} s"
        )
        print(
            f"wall {total_s:.1f} s for {len(latencies)} runs ({len(latencies) / total_s:.0f} runs/s, each started and finished)"
        )
        ok = fired == expected and missed == 0 and doubled == 0 and percentile(latencies, 0.99) <= 1.0
        print("aim (none missed or doubled, p99 <= 1 s):", "met" if ok else "NOT met")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
