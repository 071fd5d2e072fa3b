"""Memory of ``sluice serve`` with the data API under steady mixed load for ``--seconds`` (default 10 minutes).

The project of bench/api_fanout.py (sync ``fan`` MariaDB ``ticks`` -> PostgreSQL, ``sluice serve --sync fan``)
with two more tables in the same PostgreSQL database: bench/api_data.py's ``authors`` (1,000) and ``articles``
(``--articles``, 100,000 by default), exposed as ``article_by_pk`` / ``articles`` like bench/api.py does. Load:

* wrk (bench/api_load.py's ``run_wrk``, bench/api_wrk.lua), ``--connections`` connections, alternating every
  ``--chunk-s`` seconds between GraphQL by primary key (a different id per request) and the 20-row list with its
  nested author (a different category per request);
* ``--subscribers`` WebSocket subscriptions (by key, over 2 sockets, bench/api_fanout.py's client in a thread)
  fed by a writer changing ``--rate`` rows/s of ``ticks`` in MariaDB through the sync.

The server's resident memory (``VmRSS`` of its process, and of the process with its children) is sampled every
``--sample-s`` (10 s). Printed: the curve, the mean of the first and of the last minute, the max, and the aim of
issue 11, "flat within 10%": last-minute mean <= 1.10 x first-minute mean.

    PYTHONPATH=src python bench/api_soak.py                  # 10 minutes
    PYTHONPATH=src python bench/api_soak.py --seconds 120    # quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import api_data  # noqa: E402
import api_fanout  # noqa: E402
from api_load import Measure, PgWatch, run_wrk  # noqa: E402
from api_servers import sluice_queries  # noqa: E402

AIM_GROWTH = 0.10


def rss_kb(pid: int) -> int:
    """``VmRSS`` of one process in KiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc/*/stat's parent field)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        frontier += kids
    return found


class Sampler(threading.Thread):
    """Every ``every_s``: (seconds since start, RSS of ``pid`` in MB, RSS of ``pid`` and its descendants in MB)."""

    def __init__(self, pid: int, every_s: float) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.every_s = every_s
        self.samples: list[tuple[float, float, float]] = []
        self.stopping = threading.Event()
        self.began = time.monotonic()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.sample()
            self.stopping.wait(self.every_s)
        self.sample()

    def sample(self) -> None:
        own = rss_kb(self.pid)
        tree = own + sum(rss_kb(p) for p in children(self.pid))
        self.samples.append((time.monotonic() - self.began, own / 1024, tree / 1024))


def prepare_articles(pg_url: str, articles: int) -> api_data.Dataset:
    """bench/api_data.py's ``authors`` and ``articles`` in the database of ``pg_url``."""
    dataset = api_data.Dataset(1000, articles, api_data.CATEGORIES)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute(api_data.SCHEMA)
            for statement in api_data.FILL:
                conn.execute(statement, {"authors": dataset.authors, "articles": articles, "categories": dataset.categories})
        conn.execute("VACUUM ANALYZE authors")
        conn.execute("VACUUM ANALYZE articles")
    return dataset


def minute_means(samples: list[tuple[float, float, float]], column: int, total_s: float) -> tuple[float, float, float]:
    """(mean of the first minute, mean of the last minute, max) of one column of the samples."""
    first = [s[column] for s in samples if s[0] <= 60]
    last = [s[column] for s in samples if s[0] >= total_s - 60]
    return statistics.mean(first), statistics.mean(last), max(s[column] for s in samples)


def subscribe_in_thread(
    url: str, subscribers: int, rows: int
) -> tuple[api_fanout.Clients, threading.Thread, asyncio.AbstractEventLoop]:
    """bench/api_fanout.py's client (``subscribers`` by-key subscriptions over 2 sockets) in a thread of its own."""
    clients = api_fanout.Clients(url, subscribers, 2, rows, "pk")
    loop = asyncio.new_event_loop()

    def run() -> None:
        loop.run_until_complete(clients.run())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return clients, thread, loop


def soak(args: argparse.Namespace, work: Path, my_url: str, pg_url: str) -> dict[str, Any]:
    dataset = prepare_articles(pg_url, args.articles)
    api_fanout.create_ticks(my_url, args.rows)
    operations = {
        "articles": {"list": "articles", "by_pk": "article_by_pk"},
        "authors": {"list": "authors", "by_pk": "author_by_pk"},
    }
    folder = api_fanout.write_project(
        work / "project", my_url, pg_url, {"tables": ["authors", "articles"], "operations": operations}
    )
    with api_fanout.serve(folder, args.sluice_src.resolve(), work / "sluice.log") as server:
        api_fanout.wait_rows(pg_url, args.rows)
        api_fanout.wait_served(server)
        queries = sluice_queries(server)
        bodies = {}
        for name, document, variables in (
            ("by_pk", queries.by_pk, [queries.by_pk_variables(k) for k in dataset.sample_ids(5000, 1)]),
            ("list", queries.listing, [queries.list_variables(c) for c in dataset.sample_categories(1000, 2)]),
        ):
            bodies[name] = work / f"{name}.jsonl"
            bodies[name].write_text("".join(json.dumps({"query": document, "variables": v}) + "\n" for v in variables))
        clients, thread, loop = subscribe_in_thread(f"ws://{api_fanout.HOST}:{server.port}/graphql", args.subscribers, args.rows)
        deadline = time.monotonic() + 60
        while not clients.all_ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"subscriptions got no first result: {clients.errors[:3]}")
            time.sleep(0.1)
        context = multiprocessing.get_context("spawn")
        go, out = context.Event(), context.Queue()
        writer = context.Process(
            target=api_fanout.writer, args=(my_url, args.rows, args.rate, args.seconds, go, out), daemon=True
        )
        writer.start()
        time.sleep(1.0)
        clients.measuring = True
        go.set()
        sampler = Sampler(server.process.pid, args.sample_s)
        sampler.start()
        pg = PgWatch(api_data.server_url(), pg_url.rpartition("/")[2])
        measures: list[tuple[str, Measure]] = []
        try:
            chunk = 0
            while (left := args.seconds - (time.monotonic() - sampler.began)) >= 1:
                name = ("by_pk", "list")[chunk % 2]
                m = run_wrk(
                    server.graphql_url, bodies[name], min(args.chunk_s, left), args.connections, 1, server.process.pid, pg
                )
                measures.append((name, m))
                print(
                    f"  {time.monotonic() - sampler.began:5.0f} s  {name:<5} {m.requests_per_s:7,.0f} req/s  "
                    f"p99 {m.p99_ms:6.1f} ms  "
                    f"RSS {sampler.samples[-1][1]:6.1f} MB (with children {sampler.samples[-1][2]:6.1f} MB)"
                    + (f"  {m.errors} errors" if m.errors else ""),
                    flush=True,
                )
                chunk += 1
        finally:
            pg.close()
            sampler.stopping.set()
            sampler.join()
        wrote = out.get(True, 60)
        time.sleep(3.0)  # the last changes reach the subscribers
        clients.measuring = False
        loop.call_soon_threadsafe(clients.stop)
        thread.join(10)
        writer.join(10)
    latencies = [x for s in clients.subs for x in s.latencies]
    total = sampler.samples[-1][0]
    own = minute_means(sampler.samples, 1, total)
    tree = minute_means(sampler.samples, 2, total)
    return {
        "seconds": total,
        "connections": args.connections,
        "subscribers": args.subscribers,
        "samples": sampler.samples,
        "rss_mb": {"first_minute": own[0], "last_minute": own[1], "max": own[2]},
        "rss_with_children_mb": {"first_minute": tree[0], "last_minute": tree[1], "max": tree[2]},
        "flat": own[1] <= own[0] * (1 + AIM_GROWTH) and tree[1] <= tree[0] * (1 + AIM_GROWTH),
        "requests": sum(m.requests for _, m in measures),
        "requests_per_s": {q: statistics.median(m.requests_per_s for n, m in measures if n == q) for q in ("by_pk", "list")},
        "errors": sum(m.errors for _, m in measures),
        "changes_written": wrote["made"],
        "subscription_frames": sum(s.frames for s in clients.subs),
        "subscription_p50_ms": 1000 * api_fanout.percentile(latencies, 0.5),
        "subscription_p99_ms": 1000 * api_fanout.percentile(latencies, 0.99),
        "subscription_changes_made": sum(wrote["final"][k] for s in clients.subs for k in s.watched),
        "subscription_errors": clients.errors[:5],
        "subscriptions_converged": sum(all(s.last.get(k) == wrote["final"][k] for k in s.watched) for s in clients.subs),
        "load_average": os.getloadavg()[0],
    }


def report(r: dict[str, Any]) -> None:
    print(f"\nRSS of sluice serve every {r['samples'][1][0] - r['samples'][0][0]:.0f} s (MB; with children):")
    for t, own, tree in r["samples"]:
        print(f"    {t:6.0f} s  {own:7.1f}  {tree:7.1f}")
    for label, key in (("server process", "rss_mb"), ("with children", "rss_with_children_mb")):
        m = r[key]
        growth = 100 * (m["last_minute"] / m["first_minute"] - 1)
        print(
            f"  {label}: first minute {m['first_minute']:.1f} MB, last minute {m['last_minute']:.1f} MB ({growth:+.1f}%), "
            f"max {m['max']:.1f} MB"
        )
    print(
        f"  load: {r['requests']:,} GraphQL requests over {r['connections']} connections (median by_pk "
        f"{r['requests_per_s']['by_pk']:,.0f} req/s, list {r['requests_per_s']['list']:,.0f} req/s), {r['errors']} errors; "
        f"{r['changes_written']:,} changes written, {r['subscription_changes_made']:,} of them to the {r['subscribers']} "
        f"subscriptions' rows, which received {r['subscription_frames']:,} results (latest-state), delivery p50 "
        f"{r['subscription_p50_ms']:.0f} ms, p99 {r['subscription_p99_ms']:.0f} ms, final state reached by "
        f"{r['subscriptions_converged']}/{r['subscribers']}; load average at the end "
        f"{r['load_average']:.1f}"
    )
    for error in r["subscription_errors"]:
        print(f"  subscription error: {error}")
    print(
        f"  aim (issue 11): memory flat within {AIM_GROWTH:.0%} over {r['seconds'] / 60:.0f} minutes: "
        + ("met" if r["flat"] else "not met")
    )


def extras(fanout: bool, soak_s: float, sluice_src: Path | None = None) -> dict[str, Any]:
    """For bench/api.py's ``--fanout`` / ``--soak SECONDS``: run bench/api_fanout.py with its defaults and this
    soak for ``soak_s`` seconds (0: not), each printing its report; ``{"fanout": ..., "soak": ...}`` of those run."""
    src = ["--sluice-src", str(sluice_src)] if sluice_src is not None else []
    found: dict[str, Any] = {}
    if fanout:
        found["fanout"] = api_fanout.main(src)
    if soak_s:
        found["soak"] = main(["--seconds", str(soak_s), *src])
    return found


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--chunk-s", type=float, default=30.0, help="seconds of each wrk run (by_pk and list alternate)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--rate", type=int, default=50, help="row changes per second written for the subscriptions")
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--sluice-src", type=Path, default=HERE.parent / "src")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.seconds < 120:
        parser.error("--seconds must be at least 120 (a first and a last minute)")
    random.seed(0)
    with tempfile.TemporaryDirectory(prefix="apisoak-") as tmp, api_fanout.databases("apifan_soak") as (my_url, pg_url):
        result = soak(args, Path(tmp), my_url, pg_url)
    report(result)
    api_fanout.save(args.json, result)
    return result


if __name__ == "__main__":
    main()
