"""The web UI in headless Chromium: render a 2,000-object DAG, then apply a burst of 2,000 status events.

The page (src/sluice/server/static/) is served to the browser from disk by Playwright's request
routing, in its offline harness mode (``index.html?offline``), so only the browser is measured: no
server, no network. Times are taken in the page with ``performance.now()``:

- render: from ``sluiceUI.loadGraph(objects, stages)`` (layout) to the end of the frame that drew it;
- burst: from ``sluiceUI.applyEvents(events)`` (a RunStarted planning every object, then one status
  event per object: loaded, started, failed or skipped) to the end of the next frame (DAG, counts and
  event feed drawn).

    python bench/ui_render.py                      # 2,000 objects, best of 3
    python bench/ui_render.py --objects 10000 --screenshot bench/results/ui-10k.png

The target is render + burst under 2,000 ms. Chromium comes from Debian (scripts/chromium.sh).
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from playwright.sync_api import Route, sync_playwright

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STATIC = ROOT / "src" / "sluice" / "server" / "static"
sys.path.insert(0, str(HERE / "peers"))

from dag_shape import layered_dag  # noqa: E402

ORIGIN = "http://sluice.localhost"
STAGES = ["ingest", "standardize", "application"]
TARGET_MS = 2000.0
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

MEASURE = """
async ([objects, stages, events]) => {
  await window.sluiceUI.ready;
  const t0 = performance.now();
  await window.sluiceUI.loadGraph(objects, stages, "bench");
  const t1 = performance.now();
  await window.sluiceUI.applyEvents(events);
  const t2 = performance.now();
  return { render_ms: t1 - t0, burst_ms: t2 - t1, counts: window.sluiceUI.counts() };
}
"""


def chromium_path() -> str:
    """Debian's Chromium, installed by scripts/chromium.sh when missing."""
    done = subprocess.run([str(ROOT / "scripts" / "chromium.sh")], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"scripts/chromium.sh failed:\n{done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]


def synthetic_graph(n_objects: int, layers: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """GET /objects' shape for a layered DAG (bench/peers/dag_shape.py), layers spread over three stages."""
    dag = layered_dag(n_objects, layers)
    children: dict[int, list[int]] = {oid: [] for oid in dag}
    for oid, parents in dag.items():
        for parent in parents:
            children[parent].append(oid)
    stage_of = {k: STAGES[min(2, k * 3 // layers)] for k in range(layers)}
    objects = [
        {
            "id": oid,
            "name": f"object_{oid % 1_000_000:05d}",
            "stage": stage_of[oid // 1_000_000 - 1],
            "kind": "noop",
            "parents": parents,
            "children": children[oid],
            "last_status": None,
        }
        for oid, parents in dag.items()
    ]
    stages = [{"name": name, "first_id": None, "last_id": None} for name in STAGES]
    return objects, stages


def status_burst(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A RunStarted planning every object, then one status event per object (a mix of outcomes)."""
    run_id = "bench-run"
    ts = "2025-01-01T00:00:00+00:00"
    events: list[dict[str, Any]] = [
        {
            "type": "RunStarted",
            "v": 1,
            "run_id": run_id,
            "ts": ts,
            "project": "bench",
            "targets": [],
            "planned": [o["id"] for o in objects],
            "fresh": [],
            "force": True,
            "resumed": False,
        },
    ]
    for i, o in enumerate(objects):
        common = {"v": 1, "run_id": run_id, "ts": ts, "object_id": o["id"], "stage": o["stage"], "attempt": 1}
        if i % 50 == 0:
            events.append(
                {
                    **common,
                    "type": "ObjectFailed",
                    "error": "boom",
                    "error_type": "TerminalError",
                    "retryable": False,
                    "duration_s": 0.1,
                    "worker": "w",
                }
            )
        elif i % 23 == 0:
            events.append({**common, "type": "ObjectSkipped", "attempt": 0, "reason": "parent 1 failed", "fresh": False})
        elif i % 7 == 0:
            events.append({**common, "type": "ObjectStarted", "worker": "w"})
        else:
            events.append(
                {
                    **common,
                    "type": "ObjectLoaded",
                    "rows": i,
                    "duration_s": 0.01,
                    "worker": "w",
                    "location": None,
                    "content_hash": "",
                    "destination": None,
                }
            )
    return events


def serve_static(route: Route) -> None:
    path = route.request.url.removeprefix(ORIGIN).split("?")[0]
    name = "index.html" if path in ("", "/") else path.removeprefix("/static/")
    file = (STATIC / name).resolve()
    if file.parent != STATIC.resolve() or not file.is_file():
        route.fulfill(status=404, body="not found")
        return
    route.fulfill(path=file, content_type=mimetypes.guess_type(file.name)[0] or "application/octet-stream")


def measure(
    objects: list[dict[str, Any]], stages: list[dict[str, Any]], repeats: int, screenshot: Path | None
) -> list[dict[str, Any]]:
    events = status_burst(objects)
    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=BROWSER_ARGS)
        try:
            for i in range(repeats):
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                errors: list[str] = []
                page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
                page.route(f"{ORIGIN}/**", serve_static)
                page.goto(f"{ORIGIN}/?offline")
                result = page.evaluate(MEASURE, [objects, stages, events])
                if errors:
                    sys.exit(f"the page raised: {errors}")
                results.append(result)
                if screenshot is not None and i == repeats - 1:
                    screenshot.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(screenshot))
                page.close()
        finally:
            browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--screenshot", type=Path, help="save the page after the last burst")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    args = parser.parse_args()

    objects, stages = synthetic_graph(args.objects, args.layers)
    results = measure(objects, stages, args.repeats, args.screenshot)
    counts = results[-1]["counts"]
    expected = len(objects)
    if counts is None or counts["planned"] != expected:
        sys.exit(f"the UI shows {counts} after the burst; expected {expected} planned objects")
    totals = [r["render_ms"] + r["burst_ms"] for r in results]
    best = min(range(len(results)), key=lambda i: totals[i])
    render, burst = results[best]["render_ms"], results[best]["burst_ms"]
    print(
        f"UI, {args.objects:,} objects ({args.layers} layers), {len(objects):,} status events, "
        f"headless Chromium, best of {args.repeats}:"
    )
    print(f"  render DAG      {render:8.1f} ms")
    print(f"  apply burst     {burst:8.1f} ms")
    print(
        f"  total           {totals[best]:8.1f} ms   (median {statistics.median(totals):.1f} ms; target < {TARGET_MS:,.0f} ms: "
        f"{'met' if totals[best] < TARGET_MS else 'NOT met'})"
    )
    print(f"  counts shown    {', '.join(f'{k} {v}' for k, v in counts.items() if k not in ('run_id', 'status'))}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"objects": args.objects, "layers": args.layers, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
