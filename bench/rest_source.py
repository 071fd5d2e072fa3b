"""REST source throughput: pages/s of Sluice's ``type: rest`` against dlt's ``rest_api`` source, same server, same run.

A local JSON API (uvicorn, a raw ASGI app in a process of its own, pages encoded once up front) serves
``--pages`` pages of ``--per-page`` records (id, name, email, amount, created_at, active, country and a nested
``address`` object) with offset/limit pagination and a total. Measured, each ``--repeats`` times, median and best:

Sluice runs twice: pages one after another (the default) and ``paginate.concurrency: --concurrency`` (4) pages
at once; dlt's offset paginator requests one page after another.

- **extract**: Sluice: the source's Arrow batches drained (``open_source(...).read()``); dlt: ``pipeline.extract``
  of ``rest_api_source`` (items written to its extract files).
- **end to end**: Sluice: ``sluice run`` of a one-object project (REST source -> the lake's Parquet); dlt:
  ``pipeline.run`` (extract, normalize, load into DuckDB).

Runs are interleaved (every variant once, then again) so the machine's changing load falls on all alike.
dlt 1.31.0 runs in its own virtual environment (``bench/peers/setup_venvs.sh dlt`` -> ``bench/.venvs/dlt``, made on
first use) through ``bench/peers/run_dlt_rest.py``. Prints pages/s and the ratios; ``--json`` writes them to a file.

    python bench/rest_source.py                     # 1,000 pages of 100 records, 3 repeats
    python bench/rest_source.py --pages 200 --repeats 1 --no-peers
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DLT_PYTHON = HERE / ".venvs" / "dlt" / "bin" / "python"


def page_bodies(pages: int, per_page: int) -> list[bytes]:
    """Every page's JSON body, encoded once: ``{"data": [...], "meta": {"total": n}}``."""
    total = pages * per_page
    bodies = []
    for page in range(pages):
        records = [
            {
                "id": i,
                "name": f"customer {i}",
                "email": f"customer{i}@example.com",
                "amount": round(i * 1.37 % 1000, 2),
                "created_at": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
                "active": i % 3 != 0,
                "country": ("FR", "DE", "US", "JP")[i % 4],
                "address": {"city": f"city {i % 97}", "zip": f"{10000 + i % 89999}"},
            }
            for i in range(page * per_page + 1, (page + 1) * per_page + 1)
        ]
        bodies.append(json.dumps({"data": records, "meta": {"total": total}}).encode())
    return bodies


def serve(port: int, pages: int, per_page: int) -> None:
    """The API: ``GET /items?offset=&limit=`` (limit must be ``per_page``); an offset past the end is an empty page."""
    import urllib.parse

    import uvicorn

    bodies = page_bodies(pages, per_page)
    empty = json.dumps({"data": [], "meta": {"total": pages * per_page}}).encode()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        query = dict(urllib.parse.parse_qsl(scope["query_string"].decode()))
        offset = int(query.get("offset", 0))
        page = offset // per_page
        body = bodies[page] if 0 <= page < len(bodies) else empty
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, http="httptools", lifespan="off")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the bench API did not start on port {port}")


def paginate(per_page: int, concurrency: int) -> dict[str, Any]:
    return {"style": "offset", "limit": per_page, "total_path": "meta.total", "concurrency": concurrency}


def sluice_extract(url: str, per_page: int, concurrency: int) -> tuple[float, float, int]:
    """Seconds to drain the REST source's batches, CPU seconds of this process meanwhile, and the rows read."""
    from sluice.connectors.base import SourceContext
    from sluice.connectors.registry import open_source
    from sluice.project.model import SourceSpec

    options = {
        "base_url": url,
        "path": "/items",
        "records": "data",
        "paginate": paginate(per_page, concurrency),
    }
    start, cpu = time.perf_counter(), time.process_time()
    reader = open_source(SourceSpec("rest", options), SourceContext(Path("."), {}, label="bench")).read()
    rows = sum(batch.num_rows for batch in reader)
    return time.perf_counter() - start, time.process_time() - cpu, rows


def sluice_run(url: str, per_page: int, concurrency: int, folder: Path) -> tuple[float, float, int]:
    """Seconds of ``run_project`` on a one-object project (REST -> lake Parquet), CPU seconds, and the rows it loaded."""
    from sluice.project.load import load_project
    from sluice.runtime.run import RunOptions, run_project

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sluice.yaml").write_text(
        "name: restbench\nobjects:\n  - id: 1001\n    name: items\n    source:\n      type: rest\n"
        f"      base_url: {url}\n      path: /items\n      records: data\n"
        f"      paginate: {json.dumps(paginate(per_page, concurrency))}\n",
        encoding="utf-8",
    )
    project = load_project(folder)
    start, cpu = time.perf_counter(), time.process_time()
    summary = run_project(project, RunOptions(force=True))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if summary.status != "succeeded":
        raise SystemExit(f"sluice run failed: {summary.objects[1001].error}")
    return seconds, cpu, int(summary.objects[1001].rows or 0)


def dlt(mode: str, url: str, per_page: int, folder: Path) -> tuple[float, float, int]:
    """Seconds and CPU seconds of dlt's extract or run, measured inside its own process (imports excluded), rows."""
    if not DLT_PYTHON.exists():
        subprocess.run(["bash", str(HERE / "peers" / "setup_venvs.sh"), "dlt"], check=True)
    command = [str(DLT_PYTHON), str(HERE / "peers" / "run_dlt_rest.py"), mode, url, str(per_page), str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": ""})
    if done.returncode != 0:
        raise SystemExit(f"dlt {mode} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["seconds"]), float(result["cpu_s"]), int(result["rows"])


def measure(variants: list[tuple[str, Any]], repeats: int, pages: int) -> dict[str, dict[str, float]]:
    """Each variant ``repeats`` times, interleaved (round 1 of every variant, then round 2...) so that a change in the
    machine's load during the run falls on all of them alike: median and best pages/s, and the median client CPU
    milliseconds per page (the client process's own CPU time, which other processes' load disturbs less)."""
    rates: dict[str, list[float]] = {name: [] for name, _ in variants}
    cpus: dict[str, list[float]] = {name: [] for name, _ in variants}
    for attempt in range(repeats):
        for name, run in variants:
            seconds, cpu, rows = run(attempt)
            rates[name].append(pages / seconds)
            cpus[name].append(cpu * 1000 / pages)
            print(
                f"  {name:<20} run {attempt + 1}: {seconds:7.2f} s  {rows:>9,} rows  {pages / seconds:9.1f} pages/s  "
                f"{cpu * 1000 / pages:6.2f} CPU ms/page",
                flush=True,
            )
    return {
        name: {"median": statistics.median(values), "best": max(values), "cpu_ms_per_page": statistics.median(cpus[name])}
        for name, values in rates.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--per-page", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4, help="paginate.concurrency of the concurrent Sluice runs.")
    parser.add_argument("--no-peers", action="store_true", help="Sluice only.")
    parser.add_argument("--json", type=Path, help="Write the figures to this file.")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.pages, args.per_page)
        return
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--pages", str(args.pages), "--per-page", str(args.per_page)]
    )
    try:
        wait_up(port)
        url = f"http://127.0.0.1:{port}"
        print(f"API: {url}, {args.pages} pages of {args.per_page} records (offset/limit with a total)", flush=True)
        with tempfile.TemporaryDirectory(prefix="restbench-") as tmp:
            root = Path(tmp)
            c = args.concurrency
            variants: list[tuple[str, Any]] = [
                ("sluice extract", lambda _: sluice_extract(url, args.per_page, 1)),
                (f"sluice extract c{c}", lambda _: sluice_extract(url, args.per_page, c)),
                ("sluice run", lambda n: sluice_run(url, args.per_page, 1, root / f"s{n}")),
                (f"sluice run c{c}", lambda n: sluice_run(url, args.per_page, c, root / f"sc{n}")),
            ]
            if not args.no_peers:
                variants += [
                    ("dlt extract", lambda n: dlt("extract", url, args.per_page, root / f"de{n}")),
                    ("dlt run", lambda n: dlt("run", url, args.per_page, root / f"dr{n}")),
                ]
            sluice_extract(url, args.per_page, 1)  # warm-up, not counted: imports (dlt's are excluded as well)
            results = measure(variants, args.repeats, args.pages)
    finally:
        server.terminate()
        server.wait(timeout=10)
    print("\npages/s (median of runs, best in brackets), client CPU ms per page (median)")
    for name, figures in results.items():
        print(f"  {name:<20} {figures['median']:9.1f}  ({figures['best']:.1f})  {figures['cpu_ms_per_page']:6.2f} CPU ms/page")
    if not args.no_peers:
        for what in ("extract", "run"):
            for name in (f"sluice {what}", f"sluice {what} c{args.concurrency}"):
                ratio = results[name]["median"] / results[f"dlt {what}"]["median"]
                cpu = results[f"dlt {what}"]["cpu_ms_per_page"] / results[name]["cpu_ms_per_page"]
                print(
                    f"  {name:<18} / dlt {what:<8} {ratio:6.2f}x pages/s  (goal >= 2x);  dlt's CPU per page / Sluice's {cpu:5.2f}"
                )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"pages": args.pages, "per_page": args.per_page, "results": results}, indent=2))


if __name__ == "__main__":
    main()
