"""Soak: does a long-lived `sluice serve` or `sluice worker` keep growing its memory over many runs?

Two loops, side by side, each on its own copy of the project (default examples/seed-002):

* server: `sluice serve --simulate --delay-scale 0` (stage workers in process), driven with back-to-back
  forced runs through ``POST /orchestrate`` (the next starts as soon as ``GET /runs/{id}`` says the last
  one ended); its RSS is sampled.
* worker: one long-lived `sluice worker` process per stage on the embedded bus, and a loop of
  `sluice run --workers external --simulate --delay-scale 0 --force` coordinator processes; the
  workers' RSS is sampled (`serve` has no external-worker mode, so this is how a long-lived worker is soaked).

RSS is VmRSS from /proc/<pid>/status, every --sample-s seconds. Printed: the curve (time, runs, RSS MB)
and the slope over the second half (least squares, MB per minute and KB per run). Memory that levels
off once the caches are full has a slope near zero there.

    python bench/soak.py --minutes 5
    python bench/soak.py --minutes 26 --only server --json bench/results/soak.json
    git archive main src | tar -x -C /tmp/main && python bench/soak.py --sluice-src /tmp/main/src   # before
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
STAGES = ("ingest", "standardize", "application")


def rss_mb(pid: int) -> float:
    """The resident set size of ``pid`` in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def copy_project(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".sluice", "__pycache__"))
    return target


@dataclass
class Sample:
    t_s: float
    runs: int
    rss_mb: float


@dataclass
class Curve:
    name: str
    samples: list[Sample] = field(default_factory=list)
    runs: int = 0
    errors: list[str] = field(default_factory=list)

    def slope(self) -> tuple[float, float]:
        """Least-squares slope over the second half: (MB per minute, KB per run)."""
        half = self.samples[len(self.samples) // 2 :]
        if len(half) < 2:
            return 0.0, 0.0
        return _fit([s.t_s / 60 for s in half], [s.rss_mb for s in half]), 1024 * _fit(
            [float(s.runs) for s in half], [s.rss_mb for s in half]
        )


def _fit(xs: list[float], ys: list[float]) -> float:
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    return 0.0 if var == 0 else sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var


SOURCE = [ROOT / "src"]  # the sluice package the processes import (--sluice-src: compare with another version)


def env() -> dict[str, str]:
    variables = dict(os.environ)
    variables["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE[0]), variables.get("PYTHONPATH")]))
    return variables


def start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env(), start_new_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def drive_server(url: str, curve: Curve, until: float) -> None:
    """Back-to-back forced runs through POST /orchestrate, each waited for with GET /runs/{id}."""
    try:
        _drive_server(url, curve, until)
    except Exception as exc:  # the server broke: the curve says so
        curve.errors.append(f"driving the server failed after {curve.runs} runs: {exc!r}")


def _drive_server(url: str, curve: Curve, until: float) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        while time.monotonic() < until:
            answer = client.post("/orchestrate", json={"force": True})
            if answer.status_code == 409:
                time.sleep(0.01)
                continue
            answer.raise_for_status()
            run_id = answer.json()["run_id"]
            while client.get(f"/runs/{run_id}").json()["status"] == "running":
                if time.monotonic() > until + 30:
                    curve.errors.append(f"run {run_id} (run {curve.runs + 1}) did not finish")
                    return
                time.sleep(0.005)
            curve.runs += 1


def drive_runs(project: Path, curve: Curve, until: float, log: Path) -> None:
    """Back-to-back `sluice run --workers external` coordinator processes."""
    command = [sys.executable, "-m", "sluice", "run", str(project), "--workers", "external", "--json", "--force"]
    command += ["--simulate", "--delay-scale", "0"]
    while time.monotonic() < until:
        with log.open("ab") as out:
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env(), timeout=300, check=False)
        if done.returncode not in (0, 1):
            curve.errors.append(f"sluice run exited {done.returncode}; see {log}")
            time.sleep(1)
            continue
        curve.runs += 1


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"sluice serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"sluice serve did not answer within 60 s:\n{log.read_text()}")


def print_curve(curve: Curve) -> None:
    print(f"\n{curve.name}")
    print(f"{'time':>8} {'runs':>7} {'RSS MB':>8}")
    for sample in curve.samples:
        print(f"{sample.t_s:7.0f}s {sample.runs:7d} {sample.rss_mb:8.1f}")
    per_minute, per_run = curve.slope()
    first, last = curve.samples[0], curve.samples[-1]
    print(
        f"{curve.name}: {last.runs} runs, RSS {first.rss_mb:.1f} -> {last.rss_mb:.1f} MB (peak "
        f"{max(s.rss_mb for s in curve.samples):.1f}); slope over the second half: {per_minute:+.2f} MB/min, "
        f"{per_run:+.2f} KB/run"
    )
    for error in curve.errors[:5]:
        print(f"  error: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0, help="How long each loop runs.")
    parser.add_argument("--project", type=Path, default=ROOT / "examples" / "seed-002", help="The project to run.")
    parser.add_argument("--sample-s", type=float, default=10.0, help="Seconds between two RSS samples.")
    parser.add_argument("--only", choices=("server", "worker"), help="Soak only one of the two.")
    parser.add_argument("--json", type=Path, help="Also write the curves to this file.")
    parser.add_argument("--sluice-src", type=Path, default=SOURCE[0], help="The src/ folder to run (e.g. main's, to compare).")
    args = parser.parse_args()
    SOURCE[0] = args.sluice_src.resolve()

    work = Path(tempfile.mkdtemp(prefix="sluice-soak-"))
    processes: list[subprocess.Popen[bytes]] = []
    curves: list[tuple[Curve, list[int]]] = []
    drivers: list[threading.Thread] = []
    until = time.monotonic() + args.minutes * 60
    try:
        if args.only in (None, "server"):
            project = copy_project(args.project, work / "server")
            port = free_port()
            log = work / "serve.log"
            command = [sys.executable, "-m", "sluice", "serve", str(project), "--port", str(port)]
            server = start([*command, "--simulate", "--delay-scale", "0"], log)
            processes.append(server)
            url = f"http://{HOST}:{port}"
            wait_healthy(url, server, log)
            curve = Curve("sluice serve (POST /orchestrate, force)")
            curves.append((curve, [server.pid]))
            drivers.append(threading.Thread(target=drive_server, args=(url, curve, until), daemon=True))
        if args.only in (None, "worker"):
            project = copy_project(args.project, work / "worker")
            log = work / "worker.log"
            workers = [start([sys.executable, "-m", "sluice", "worker", str(project), "--stage", s], log) for s in STAGES]
            processes.extend(workers)
            curve = Curve(f"sluice worker x{len(workers)} (sum of RSS; sluice run --workers external loop)")
            curves.append((curve, [w.pid for w in workers]))
            drivers.append(threading.Thread(target=drive_runs, args=(project, curve, until, work / "run.log"), daemon=True))
        began = time.monotonic()
        for driver in drivers:
            driver.start()
        while True:
            now = time.monotonic()
            for curve, pids in curves:
                curve.samples.append(Sample(now - began, curve.runs, sum(rss_mb(pid) for pid in pids)))
            if now >= until:
                break
            time.sleep(min(args.sample_s, max(0.0, until - now)))
        for driver in drivers:
            driver.join(timeout=60)
    finally:
        for process in processes:
            stop(process)
    for curve, _ in curves:
        print_curve(curve)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = [{**asdict(c), "slope_mb_per_min": c.slope()[0], "slope_kb_per_run": c.slope()[1]} for c, _ in curves]
        args.json.write_text(json.dumps(payload, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
