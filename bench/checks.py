"""Ten data-quality checks on a 10,000,000-row PostgreSQL table: Sluice against Soda Core, side by side.

The table (``checks_data.py``: ``bench_checks.orders``, no index, and its 1,000-row dimension
``bench_checks.customers``) is made once with faults at fixed rows and reused. Both tools run the same ten checks
on it, inside PostgreSQL:

| check | Sluice (``checks:`` on the object whose destination is the table) | Soda Core (SodaCL) | expected |
|---|---|---|---|
| order_id not null | ``not_null: {columns: [order_id]}`` | ``missing_count(order_id) = 0`` | passes |
| order_id unique | ``unique: {columns: [order_id]}`` | ``duplicate_count(order_id) = 0`` | 9 repeated ids |
| customer_id not null | ``not_null: {columns: [customer_id]}`` | ``missing_count(customer_id) = 0`` | 49 |
| status accepted | ``accepted_values`` (5 values) | ``invalid_count(status) = 0`` with ``valid values`` | 39 |
| customer exists | ``relationships: {to: customers}`` | ``values in (customer_id) must exist in customers`` | 24 |
| row count | ``row_count: {min: 1, max: 20000000}`` | ``row_count between 1 and 20000000`` | passes |
| freshness | ``freshness: {column: created_at, max_age: 3650d}`` | ``freshness(created_at) < 3650d`` | passes |
| amount >= 0 | ``expression: amount >= 0`` | ``failed rows`` with ``fail condition: amount < 0`` | 30 |
| updated before created | ``sql:`` returning the failing rows | ``failed rows`` with ``fail query`` | 19 |
| email not null (warn) | ``not_null`` with ``severity: warn`` | ``missing_count(email)`` with ``warn: when > 0`` | 103,092 |

- **Sluice**: ``sluice check .tmp/bench/checks/sluice --object 1002 --json --no-store`` (the checks a worker runs
  after writing the output, run on the current table without running the object; results not kept, as Soda keeps
  none without its cloud), one JSON line per check read back.
- **Soda Core** 3.5.6 (``soda-core-postgres``, Apache-2.0) in its own virtual environment ``bench/.venvs/soda``
  (``peers/setup_venvs.sh soda``, made on first use): ``soda scan -d bench -c configuration.yml checks.yml
  -srf results.json`` with its usage telemetry off (``HOME`` set to its work folder, whose ``.soda/config.yml`` says
  so: without it every scan waits about 7 s for telemetry retries that cannot succeed here), results read from that
  file.

Each round runs both, one after the other, alternating who goes first, ``--rounds`` (3) times. Times are the
wall time of each process (start-up and imports included: what a user waits for) and, beside them, the time
inside (Sluice: the sum of the checks' own durations; Soda: the scan's own start and end timestamps). Both must find the
same failing counts per check and the expected ones, else the bench exits 1. The ratio is Soda's median wall
time over Sluice's (aim: at least 2x).

    python bench/checks.py                        # SLUICE_TEST_PG_URL, 10,000,000 rows, 3 rounds
    python bench/checks.py --rows 1000000 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import checks_data

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = REPO / ".tmp" / "bench" / "checks"
SODA = HERE / ".venvs" / "soda" / "bin" / "soda"
STATUSES = ", ".join(checks_data.STATUSES)

# name -> (Sluice's check, Soda's check, key of checks_data.expected() or None when it passes)
CHECKS: dict[str, tuple[str, str, str | None]] = {
    "order_id_not_null": ("not_null: {columns: [order_id]}", "missing_count(order_id) = 0", None),
    "order_id_unique": ("unique: {columns: [order_id]}", "duplicate_count(order_id) = 0", "duplicate_ids"),
    "customer_id_not_null": ("not_null: {columns: [customer_id]}", "missing_count(customer_id) = 0", "null_customer"),
    "status_accepted": (
        f"accepted_values: {{column: status, values: [{STATUSES}]}}",
        f"invalid_count(status) = 0:\n      valid values: [{STATUSES}]",
        "unknown_status",
    ),
    "customer_exists": (
        "relationships: {column: customer_id, to: customers, field: customer_id}",
        "values in (customer_id) must exist in customers (customer_id)",
        "orphan_customer",
    ),
    "row_count": ("row_count: {min: 1, max: 20000000}", "row_count between 1 and 20000000", None),
    "fresh": ("freshness: {column: created_at, max_age: 3650d}", "freshness(created_at) < 3650d", None),
    "amount_not_negative": (
        "expression: amount >= 0",
        "failed rows:\n      name: amount_not_negative\n      fail condition: amount < 0",
        "negative_amount",
    ),
    "updated_before_created": (
        "sql: select order_id from {{ this }} where updated_at < created_at",
        "failed rows:\n      name: updated_before_created\n      fail query: |\n"
        "        select order_id from orders where updated_at < created_at",
        "updated_before_created",
    ),
    "email_not_null": (
        "not_null: {columns: [email]}\n        severity: warn",
        "missing_count(email):\n      warn: when > 0",
        "null_email",
    ),
}

SLUICE_YAML = """name: bench_checks
connections:
  warehouse: {url}
objects:
  - id: 1001
    name: customers
    source: {{type: csv, path: empty.csv}}
    destination: {{connection: warehouse, table: {schema}.customers}}
  - id: 1002
    name: orders
    source: {{type: csv, path: empty.csv}}
    destination: {{connection: warehouse, table: {schema}.orders}}
    parents: [1001]
    checks:
{checks}
"""


def sluice_project(url: str) -> Path:
    folder = WORK / "sluice"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.csv").write_text("id\n", encoding="utf-8")
    lines = [f"      - {sluice}\n        name: {name}" for name, (sluice, _, _) in CHECKS.items()]
    text = SLUICE_YAML.format(url=url, schema=checks_data.SCHEMA, checks="\n".join(lines))
    (folder / "sluice.yaml").write_text(text, encoding="utf-8")
    return folder


def soda_files(url: str) -> tuple[Path, Path]:
    """The SodaCL checks file and the data source configuration for ``url``, written in WORK/soda."""
    folder = WORK / "soda"
    (folder / ".soda").mkdir(parents=True, exist_ok=True)
    (folder / ".soda" / "config.yml").write_text("send_anonymous_usage_stats: false\n", encoding="utf-8")
    parts = urlsplit(url)
    config = {
        "type": "postgres",
        "host": parts.hostname or "127.0.0.1",
        "port": str(parts.port or 5432),
        "username": parts.username or "postgres",
        "password": parts.password or "",
        "database": parts.path.lstrip("/") or "postgres",
        "schema": checks_data.SCHEMA,
    }
    body = "\n".join(f"  {key}: {json.dumps(value)}" for key, value in config.items())
    (folder / "configuration.yml").write_text(f"data_source bench:\n{body}\n", encoding="utf-8")
    checks = "\n".join(f"  - {soda}" for _, soda, _ in CHECKS.values())
    (folder / "checks.yml").write_text(f"checks for orders:\n{checks}\n", encoding="utf-8")
    return folder / "configuration.yml", folder / "checks.yml"


def ensure_soda() -> str:
    if not SODA.exists():
        done = subprocess.run(["bash", str(HERE / "peers" / "setup_venvs.sh"), "soda"], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"cannot install Soda Core:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    python = SODA.parent / "python"
    done = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('soda-core-postgres'))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return f"soda-core-postgres {done.stdout.strip()}"


def run_sluice(project: Path) -> dict[str, Any]:
    """``sluice check PROJECT --object 1002 --json --no-store`` in a process of its own (this checkout's code)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "sluice", "check", str(project), "--object", "1002", "--json", "--no-store"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode not in (0, 1) or len(lines) != len(CHECKS):  # 1: an error check failed, as expected
        raise SystemExit(f"sluice check failed (exit {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    counts = {r["check"]: (r["status"], r["failing_rows"]) for r in lines}
    durations = {r["check"]: r["duration_s"] for r in lines}
    return {"wall_s": wall, "inside_s": sum(durations.values()), "counts": counts, "durations": durations}


def run_soda(config: Path, checks: Path) -> dict[str, Any]:
    results = WORK / "soda" / "results.json"
    results.unlink(missing_ok=True)
    command = [str(SODA), "scan", "-d", "bench", "-c", str(config), str(checks), "-srf", str(results)]
    started = time.perf_counter()
    env = {**os.environ, "HOME": str(config.parent)}  # its ~/.soda/config.yml: telemetry off, nothing left in the real home
    done = subprocess.run(command, capture_output=True, text=True, cwd=config.parent, env=env)
    if "collect.soda.io" in done.stdout + done.stderr:
        raise SystemExit("soda scan still tried to send usage telemetry: its time would include the retries")
    wall = time.perf_counter() - started
    if not results.exists():
        raise SystemExit(f"soda scan wrote no results (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    scan = json.loads(results.read_text(encoding="utf-8"))
    if scan.get("hasErrors"):
        raise SystemExit(f"soda scan had errors:\n{done.stdout[-3000:]}")
    by_definition = {}
    for check in scan["checks"]:
        by_definition[check["name"]] = check
    counts: dict[str, tuple[str, int]] = {}
    for name, (_, soda, _) in CHECKS.items():
        title = soda.split(":\n")[0] if not soda.startswith("failed rows") else name
        found = by_definition.get(title) or next((c for n, c in by_definition.items() if n.startswith(title)), None)
        if found is None:
            raise SystemExit(f"soda scan has no result for {title!r}: {sorted(by_definition)}")
        outcome = {"pass": "passed", "fail": "failed", "warn": "failed"}.get(found["outcome"], found["outcome"])
        value = found.get("diagnostics", {}).get("value") or 0
        counts[name] = (outcome, int(value) if CHECKS[name][2] else 0)
    inside = (parse_ts(scan["scanEndTimestamp"]) - parse_ts(scan["scanStartTimestamp"])).total_seconds()
    queries = {q["name"]: seconds(q["duration"]) for q in scan.get("queries", []) if q.get("duration")}
    return {"wall_s": wall, "inside_s": inside, "counts": counts, "durations": queries}


def seconds(text: str) -> float:
    """Soda's query duration ``0:00:02.143355`` in seconds."""
    hours, minutes, rest = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(rest)


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def expected_counts(rows: int) -> dict[str, tuple[str, int]]:
    faults = checks_data.expected(rows)
    return {name: ("failed", faults[key]) if key else ("passed", 0) for name, (_, _, key) in CHECKS.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("SLUICE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:25432/postgres"))
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object at the end")
    args = parser.parse_args()

    made, took = checks_data.ensure_table(args.url, args.rows)
    print(f"table {checks_data.SCHEMA}.orders: {args.rows:,} rows, {'made' if made else 'reused'} in {took:.1f} s")
    peer = ensure_soda()
    project = sluice_project(args.url)
    config, checks = soda_files(args.url)
    expected = expected_counts(args.rows)
    print(f"peer: {peer}; load: {os.getloadavg()[0]:.2f}")

    figures: dict[str, list[dict[str, Any]]] = {"sluice": [], "soda": []}
    sides = {"sluice": lambda: run_sluice(project), "soda": lambda: run_soda(config, checks)}
    for index in range(args.rounds):
        order = ["sluice", "soda"] if index % 2 == 0 else ["soda", "sluice"]
        for side in order:
            result = sides[side]()
            figures[side].append(result)
            print(f"round {index + 1} {side:>6}: {result['wall_s']:6.2f} s wall, {result['inside_s']:6.2f} s inside")

    failed = False
    for side in ("sluice", "soda"):
        for result in figures[side]:
            if result["counts"] != expected:
                failed = True
                wrong = {n: (result["counts"].get(n), want) for n, want in expected.items() if result["counts"].get(n) != want}
                print(f"{side} found other failures than expected (found, expected): {wrong}")
    print(f"\n{'check':<24} {'expected':>18} {'sluice':>18} {'soda':>18}")
    for name, want in expected.items():
        shown = [f"{s} {n:,}" for s, n in (want, figures["sluice"][-1]["counts"][name], figures["soda"][-1]["counts"][name])]
        print(f"{name:<24} {shown[0]:>18} {shown[1]:>18} {shown[2]:>18}")
    medians = {side: {k: statistics.median(r[k] for r in figures[side]) for k in ("wall_s", "inside_s")} for side in figures}
    ratio = medians["soda"]["wall_s"] / medians["sluice"]["wall_s"]
    inside_ratio = medians["soda"]["inside_s"] / medians["sluice"]["inside_s"]
    print("\nwhere the time goes in the last round (seconds, each query as the tool reports it):")
    for side in ("sluice", "soda"):
        ranked = sorted(figures[side][-1]["durations"].items(), key=lambda item: -item[1])
        print(f"  {side}: " + ", ".join(f"{name} {took:.2f}" for name, took in ranked))
    print(f"\nmedian wall: Sluice {medians['sluice']['wall_s']:.2f} s, Soda {medians['soda']['wall_s']:.2f} s")
    print(f"median inside: Sluice {medians['sluice']['inside_s']:.2f} s, Soda {medians['soda']['inside_s']:.2f} s")
    print(f"Sluice is {ratio:.2f}x Soda Core (wall; {inside_ratio:.2f}x inside); aim >= 2x: {'met' if ratio >= 2 else 'NOT met'}")
    print("same failures found by both: " + ("no" if failed else "yes"))
    if args.json:
        summary = {"rows": args.rows, "medians": medians, "ratio": ratio, "inside_ratio": inside_ratio}
        print(json.dumps({**summary, "same": not failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
