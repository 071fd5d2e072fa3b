"""Orchestration overhead: no-op objects in a layered DAG, Sluice against Dagster and Prefect.

Every object in layer k > 0 has two parents in layer k - 1 (bench/peers/dag_shape.py, shared with the
peers). Sluice runs on its embedded bus with in-process workers; its time is RunStarted to
RunFinished, read from the event log. Per-object orchestration latency is, for every object with
parents, the time from its last parent's ObjectLoaded to its ObjectReady.

    python bench/orchestration.py                 # 5,000 objects for Sluice + 2,000-object comparison
    python bench/orchestration.py --no-peers      # Sluice only

A chain of objects (each waiting on the one before) measures the same latency without a backlog.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))

from dag_shape import layered_dag  # noqa: E402
from measure import measure_peer  # noqa: E402

from sluice import events as ev  # noqa: E402
from sluice.project.load import load_project  # noqa: E402
from sluice.project.model import Project  # noqa: E402
from sluice.runtime.history import run_events  # noqa: E402
from sluice.runtime.run import RunOptions, open_backends, run_project  # noqa: E402


def write_project(folder: Path, objects: int, layers: int) -> Path:
    dag = layered_dag(objects, layers)
    names = ["ingest", "standardize", "application"]
    stages = {}
    for k in range(layers):
        stage = names[min(k, 2)]
        low, high = 1_000_000 * (k + 1), 1_000_000 * (k + 2) - 1
        if stage in stages:
            stages[stage]["ids"] = f"{stages[stage]['ids'].split('-')[0]}-{high}"
        else:
            stages[stage] = {"ids": f"{low}-{high}"}
    last = names[min(layers - 1, 2)]
    stages[last]["ids"] = stages[last]["ids"].split("-")[0] + "+"
    config = {"name": "bench", "stages": stages, "objects": [{"id": oid, "parents": parents} for oid, parents in dag.items()]}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sluice.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_seconds(log: list[ev.AnyEvent]) -> float:
    """From the run's ``RunStarted`` to its ``RunFinished``, by the events' own timestamps."""
    started = next(e for e in log if isinstance(e, ev.RunStarted)).ts
    finished = next(e for e in log if isinstance(e, ev.RunFinished)).ts
    return (finished - started).total_seconds()


def parent_latencies_ms(project: Project, log: list[ev.AnyEvent], child_event: type[ev.ObjectEvent]) -> list[float]:
    """Per object with parents: ms from its last parent's ``ObjectLoaded`` to its first ``child_event``."""
    loaded_at = {e.object_id: e.ts for e in log if isinstance(e, ev.ObjectLoaded)}
    first: dict[int, Any] = {}
    for e in log:
        if isinstance(e, child_event):
            first.setdefault(e.object_id, e.ts)
    return [
        (ts - max(loaded_at[p] for p in project.objects[oid].parents)).total_seconds() * 1000
        for oid, ts in first.items()
        if project.objects[oid].parents
    ]


def measure_sluice(objects: int, layers: int) -> dict[str, Any]:
    """One run in a fresh project folder; figures from the run's own event log."""
    folder = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    try:
        project = load_project(write_project(folder, objects, layers))
        summary = run_project(project, RunOptions(force=True))
        assert summary.status == "succeeded", summary.status
        with open_backends(project) as backends:
            log = [event for _, event in run_events(backends, project, summary.run_id)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    seconds = run_seconds(log)
    latencies = parent_latencies_ms(project, log, ev.ObjectReady)
    return {
        "tool": "sluice",
        "objects": objects,
        "layers": layers,
        "seconds": seconds,
        "objects_per_s": objects / seconds,
        "latency_ms_p50": percentile(latencies, 0.50),
        "latency_ms_p99": percentile(latencies, 0.99),
        "events": len(log),
    }


def best_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    best = dict(max(results, key=lambda r: r["objects_per_s"]))
    best["objects_per_s_median"] = statistics.median(r["objects_per_s"] for r in results)
    best["repeats"] = len(results)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--peer-objects", type=int, default=2000)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chain", type=int, default=300, help="objects in the chain that measures latency without a backlog")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--json", type=Path, help="Also write the results to this file.")
    args = parser.parse_args()

    results: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M:%S")}
    big = best_of([measure_sluice(args.objects, args.layers) for _ in range(args.repeats)])
    results["sluice_large"] = big
    print(
        f"sluice   {big['objects']:>6} objects: {big['objects_per_s']:>9,.0f} objects/s (best of {big['repeats']}, "
        f"median {big['objects_per_s_median']:,.0f}); "
        f"ready latency p50 {big['latency_ms_p50']:.2f} ms, p99 {big['latency_ms_p99']:.2f} ms"
    )
    chain = best_of([measure_sluice(args.chain, args.chain) for _ in range(args.repeats)])
    results["sluice_chain"] = chain
    print(
        f"sluice   chain of {chain['objects']} (one object waiting on the previous): "
        f"ready latency p50 {chain['latency_ms_p50']:.2f} ms, p99 {chain['latency_ms_p99']:.2f} ms"
    )
    if not args.no_peers:
        small = best_of([measure_sluice(args.peer_objects, args.layers) for _ in range(args.repeats)])
        results["sluice_small"] = small
        print(f"sluice   {small['objects']:>6} objects: {small['objects_per_s']:>9,.0f} objects/s")
        for tool in ("dagster", "prefect"):
            peer = measure_peer(tool, args.peer_objects, args.layers)
            results[tool] = peer
            ratio = small["objects_per_s"] / peer["objects_per_s"]
            print(
                f"{tool:<8} {peer['objects']:>6} objects: {peer['objects_per_s']:>9,.1f} objects/s "
                f"(v{peer['version']}); sluice is {ratio:,.0f}x"
            )
            results[f"ratio_vs_{tool}"] = ratio
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
