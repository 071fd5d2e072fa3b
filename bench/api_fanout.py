"""Live-subscription fan-out through a sync: 500 WebSocket subscribers, 1,000 changes/s written in MariaDB.

A project whose sync ``fan`` copies MariaDB's ``ticks`` into PostgreSQL (embedded bus) and whose ``api:`` serves
the PostgreSQL copy (role ``anon``), run as ``python -m sluice serve PROJECT --sync fan`` in a subprocess.
``ticks`` holds ``--rows`` rows (``id``, ``grp``, a counter ``n``, ``committed_at``: Unix seconds, a DOUBLE).

* A writer process updates ``--rate`` rows/s for ``--seconds`` (one multi-row ``INSERT ... ON DUPLICATE KEY
  UPDATE`` of ``rate/100`` rows every 10 ms, or one row every ``1/rate`` s below 100/s, autocommit, rows taken
  round-robin, so each row changes ``rate/rows`` times a second), stamping ``committed_at = time.time()`` just
  before sending the statement (the figure thus includes the statement's own time: an upper bound on commit ->
  receive).
* One client process (asyncio, ``websockets``, graphql-transport-ws) holds ``--subscribers`` subscriptions
  spread over ``--connections`` sockets: ``--query pk`` subscribes to ``ticks_by_pk(id:)`` (subscriber ``i``
  to row ``i % rows + 1``), ``--query list`` to ``ticks(where: {grp: {_eq:}}, order_by: id)`` (10 rows each).
* Delivery latency per (subscriber, change seen): receive time (``time.time()`` when the frame is read) minus
  the row's ``committed_at``, counted once per row whose ``n`` differs from what that subscriber saw last.
  Results are latest-state (docs/api/subscriptions.md): changes coalesce, so a subscriber sees some of the
  changes made to its rows, not all; the report gives seen vs made, and whether every subscriber's last
  result equals the final state of its rows ("converged").

Printed: p50/p90/p99/max latency, deliveries/s (``next`` frames received), changes seen vs made, CPU cores
of server, client and writer, the load average, and the server's subscription counters (/metrics).
``--profile`` records the server with py-spy during the measured window (``--gil --nonblocking``: samples of the
thread holding the GIL, i.e. where the server's Python CPU goes, without pausing it) and prints the hottest
functions.

    PYTHONPATH=src python bench/api_fanout.py                          # 500 subscribers / 50 sockets, 30 s
    PYTHONPATH=src python bench/api_fanout.py --connections 500 --query list --profile
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import httpx
import psycopg
import websockets

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO / "tests")]

from api_servers import Server, running  # noqa: E402
from server import free_port, process_usage  # noqa: E402
from servers_fixtures import mysql_connect, mysql_database, pg_database  # noqa: E402

HOST = "127.0.0.1"
SYNC = "fan"
TICK_S = 0.01
PK = "subscription F($id: Int!) { ticks_by_pk(id: $id) { id n committed_at } }"
LIST = "subscription F($g: Int!) { ticks(where: {grp: {_eq: $g}}, order_by: [{id: asc}]) { id n committed_at } }"
ROWS_PER_GROUP = 10


def mysql_server() -> str:
    """``SLUICE_BENCH_MYSQL_URL``, else the test server's ``SLUICE_TEST_MYSQL_URL``, else scripts/servers' default."""
    return (
        os.environ.get("SLUICE_BENCH_MYSQL_URL")
        or os.environ.get("SLUICE_TEST_MYSQL_URL")
        or "mysql://sluice:sluice@127.0.0.1:23306/sluice"
    )


def pg_server() -> str:
    return (
        os.environ.get("SLUICE_BENCH_PG_URL")
        or os.environ.get("SLUICE_TEST_PG_URL")
        or "postgresql://postgres@127.0.0.1:25432/postgres"
    )


# --- the project, the databases, the server --------------------------------------------------------------


@contextmanager
def databases(prefix: str) -> Iterator[tuple[str, str]]:
    """A MariaDB and a PostgreSQL database named ``<prefix>_<random>``, dropped on exit: their URLs."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with mysql_database(mysql_server(), name) as my_url, pg_database(pg_server(), name) as pg_url:
        yield my_url, pg_url


def create_ticks(my_url: str, rows: int) -> None:
    """``ticks`` in MariaDB with ``rows`` rows (``n = 0``)."""
    conn = mysql_connect(my_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE ticks (id INT PRIMARY KEY, grp INT NOT NULL, n BIGINT NOT NULL, committed_at DOUBLE NOT NULL)"
            )
            values = [(i, (i - 1) // ROWS_PER_GROUP, 0, time.time()) for i in range(1, rows + 1)]
            cur.executemany("INSERT INTO ticks VALUES (%s, %s, %s, %s)", values)
    finally:
        conn.close()


def write_project(folder: Path, my_url: str, pg_url: str, extra: dict[str, Any] | None = None) -> Path:
    """``folder/sluice.yaml``: connections ``src`` (MariaDB) and ``dst`` (PostgreSQL), the sync ``fan`` of ``ticks``,
    and an ``api:`` over ``dst`` (``ticks`` and the ``extra["tables"]``, read-only, role ``anon`` may select them;
    ``extra["operations"]`` names fields)."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = ["ticks", *(extra or {}).get("tables", [])]
    config = {
        "name": "apifan",
        "connections": {"src": my_url, "dst": pg_url},
        "objects": [],
        "syncs": [{"name": SYNC, "source": "src", "target": "dst", "tables": ["ticks"]}],
        "api": {
            "sources": [{"connection": "dst", "tables": tables, "read_only": True}],
            "operations": (extra or {}).get("operations", {}),
            "roles": {"anon": {table: {"select": {}} for table in tables}},
        },
    }
    (folder / "sluice.yaml").write_text(json.dumps(config, indent=2))  # JSON is YAML
    return folder


def serve(folder: Path, sluice_src: Path, log: Path) -> Any:
    """``python -m sluice serve PROJECT --sync fan`` (a context manager yielding an api_servers.Server)."""
    command = [sys.executable, "-m", "sluice", "serve", str(folder), "--host", HOST, "--port", str(free_port()), "--sync", SYNC]
    path = os.pathsep.join([str(sluice_src), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return running(
        "sluice serve", command, int(command[command.index("--port") + 1]), log, {**os.environ, "PYTHONPATH": path}, folder
    )


def wait_rows(pg_url: str, rows: int, timeout_s: float = 120) -> None:
    """Until the sync's snapshot put ``rows`` rows in PostgreSQL's ``ticks``. Raises TimeoutError."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(pg_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            try:
                row = conn.execute("SELECT count(*) FROM public.ticks").fetchone()
                if row is not None and row[0] == rows:
                    return
            except psycopg.errors.UndefinedTable:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"the sync did not copy {rows} rows of ticks into PostgreSQL within {timeout_s:.0f} s")


def wait_served(server: Server, timeout_s: float = 60) -> None:
    """Until the API answers ``ticks_by_pk(id: 1)`` (its schema holds the table the sync created). A subscription
    sent before that may be refused: once, 500 were, with "the schema has no subscription field", although the
    table was already in PostgreSQL (reported to the API's owner). Raises TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = server.post("{ ticks_by_pk(id: 1) { id } }")
        if (answer.get("data") or {}).get("ticks_by_pk"):
            return
        time.sleep(0.5)
    raise TimeoutError(f"the API did not serve ticks within {timeout_s:.0f} s: {answer}")


def subscription_counters(server: Server) -> dict[str, float]:
    """The server's ``sluice_api_subscription_*`` counters from /metrics, summed over labels but ``outcome``."""
    found: dict[str, float] = {}
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    for line in text.splitlines():
        if not line.startswith("sluice_api_subscription_") or "_created" in line:
            continue
        name, _, value = line.rpartition(" ")
        metric, _, labels = name.partition("{")
        outcome = next((p.split("=")[1].strip('"') for p in labels.rstrip("}").split(",") if p.startswith("outcome=")), "")
        key = f"{metric}{'[' + outcome + ']' if outcome else ''}"
        found[key] = found.get(key, 0.0) + float(value)
    return found


# --- the writer (its own process) ------------------------------------------------------------------------


def writer(my_url: str, rows: int, rate: int, seconds: float, go: EventType, out: Any) -> None:
    """Update ``rate`` rows/s for ``seconds`` once ``go`` is set; put ``{"made", "seconds", "final", "cpu_s"}``."""
    conn = mysql_connect(my_url)
    tick_s = max(TICK_S, 1.0 / rate)
    per_tick = max(1, round(rate * tick_s))
    counters = [0] * (rows + 1)
    statement = (
        "INSERT INTO ticks (id, grp, n, committed_at) VALUES "
        + ",".join(["(%s,%s,%s,%s)"] * per_tick)
        + " ON DUPLICATE KEY UPDATE n = VALUES(n), committed_at = VALUES(committed_at)"
    )
    go.wait()
    made, position, began = 0, 0, time.monotonic()
    with conn.cursor() as cur:
        tick = 0
        while time.monotonic() - began < seconds:
            params: list[Any] = []
            for _ in range(per_tick):
                key = position % rows + 1
                position += 1
                counters[key] += 1
                params += [key, (key - 1) // ROWS_PER_GROUP, counters[key], 0.0]
            stamp = time.time()
            for i in range(3, len(params), 4):
                params[i] = stamp
            cur.execute(statement, params)
            made += per_tick
            tick += 1
            pause = began + tick * tick_s - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    elapsed = time.monotonic() - began
    conn.close()
    usage = os.times()
    out.put({"made": made, "seconds": elapsed, "final": counters, "cpu_s": usage.user + usage.system})


# --- the subscribers (asyncio, this process) -------------------------------------------------------------


@dataclass
class Subscriber:
    """One subscription: the rows it watches, the last ``n`` seen of each, what it received."""

    index: int
    variables: dict[str, int]
    watched: list[int]
    last: dict[int, int] = field(default_factory=dict)
    frames: int = 0
    seen: int = 0
    latencies: list[float] = field(default_factory=list)
    ready: bool = False


class Clients:
    """``subscribers`` subscriptions over ``connections`` graphql-transport-ws sockets (see the module)."""

    def __init__(self, url: str, subscribers: int, connections: int, rows: int, query: str, deflate: bool = True) -> None:
        self.url = url
        self.deflate = deflate
        self.document = PK if query == "pk" else LIST
        groups = max(1, rows // ROWS_PER_GROUP)
        self.subs = []
        for i in range(subscribers):
            if query == "pk":
                key = i % rows + 1
                self.subs.append(Subscriber(i, {"id": key}, [key]))
            else:
                group = i % groups
                watched = [k for k in range(1, rows + 1) if (k - 1) // ROWS_PER_GROUP == group]
                self.subs.append(Subscriber(i, {"g": group}, watched))
        self.connections = connections
        self.measuring = False
        self.errors: list[str] = []
        self._stop = asyncio.Event()

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._socket(c)) for c in range(self.connections)]
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        self._stop.set()

    def all_ready(self) -> bool:
        return all(s.ready for s in self.subs)

    async def _socket(self, number: int) -> None:
        mine = {str(s.index): s for s in self.subs if s.index % self.connections == number}
        try:
            async with websockets.connect(
                self.url,
                subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
                max_size=None,
                compression="deflate" if self.deflate else None,
                ping_interval=None,
                open_timeout=60,
            ) as ws:
                await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
                ack = json.loads(await ws.recv())
                if ack.get("type") != "connection_ack":
                    raise RuntimeError(f"no connection_ack: {ack}")
                for op, sub in mine.items():
                    await ws.send(
                        json.dumps(
                            {"id": op, "type": "subscribe", "payload": {"query": self.document, "variables": sub.variables}}
                        )
                    )
                async for frame in ws:
                    received = time.time()
                    self._frame(mine, frame, received)
                if not self._stop.is_set():
                    self.errors.append(f"socket {number} closed by the server: {ws.close_code} {ws.close_reason!r}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # reported, not raised: the other sockets go on
            self.errors.append(f"socket {number}: {type(exc).__name__}: {exc}")

    def _frame(self, mine: dict[str, Subscriber], frame: str | bytes, received: float) -> None:
        message = json.loads(frame)
        sub = mine.get(message.get("id", ""))
        if sub is None or message.get("type") != "next":
            if message.get("type") == "error":
                self.errors.append(f"subscription {message.get('id')}: {message.get('payload')}")
            return
        data = message["payload"].get("data") or {}
        found = data.get("ticks_by_pk") if "ticks_by_pk" in data else data.get("ticks")
        rows = [found] if isinstance(found, dict) else (found or [])
        if self.measuring:
            sub.frames += 1
        for row in rows:
            key, n = int(row["id"]), int(row["n"])
            if sub.last.get(key) != n:
                if sub.ready and self.measuring:
                    sub.seen += 1
                    sub.latencies.append(received - row["committed_at"])
                sub.last[key] = n
        sub.ready = True


# --- one run ---------------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


def collapsed_summary(path: Path, top: int = 12) -> list[str]:
    """Lines naming the functions with most samples in a py-spy ``--format raw`` file: self (leaf) and total."""
    leaves: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [f.strip() for f in stack.split(";") if f.strip()]
        n = int(count)
        samples += n
        if frames:
            leaves[frames[-1]] += n
        for frame in set(frames):
            totals[frame] += n
    out = [f"    {samples} samples; self time (leaf functions):"]
    out += [f"      {100 * c / samples:5.1f}%  {f[:150]}" for f, c in leaves.most_common(top)]
    out.append("    total time (function on the stack):")
    out += [f"      {100 * c / samples:5.1f}%  {f[:150]}" for f, c in totals.most_common(top * 2)]
    return out


async def measure(server: Server, args: argparse.Namespace, my_url: str, work: Path) -> dict[str, Any]:
    ws_url = f"ws://{HOST}:{server.port}/graphql"
    clients = Clients(ws_url, args.subscribers, args.connections, args.rows, args.query, not args.no_deflate)
    runner = asyncio.create_task(clients.run())
    deadline = time.monotonic() + 120
    while not clients.all_ready():
        if time.monotonic() > deadline or runner.done():
            raise RuntimeError(
                f"{sum(not s.ready for s in clients.subs)} subscriptions got no first result: {clients.errors[:3]}"
            )
        await asyncio.sleep(0.1)
    context = multiprocessing.get_context("spawn")
    go, out = context.Event(), context.Queue()
    process = context.Process(target=writer, args=(my_url, args.rows, args.rate, args.seconds, go, out), daemon=True)
    process.start()
    await asyncio.sleep(1.0)  # the writer imported and connected
    profile = None
    if args.profile:
        raw = work / "py-spy.txt"
        profile = subprocess.Popen(
            [
                "py-spy",
                "record",
                "-p",
                str(server.process.pid),
                "-d",
                str(int(args.seconds)),
                "-r",
                "50",
                "-f",
                "raw",
                "-o",
                str(raw),
                "--threads",
                "--gil",
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    counters_before = subscription_counters(server)
    server_before, client_before, load_before = process_usage(server.process.pid), os.times(), os.getloadavg()[0]
    clients.measuring = True
    began = time.monotonic()
    go.set()
    result: dict[str, Any] = await asyncio.to_thread(out.get, True, args.seconds + 120)
    await asyncio.sleep(args.drain_s)  # the last changes arrive
    clients.measuring = False
    wall = time.monotonic() - began
    server_used, client_after = process_usage(server.process.pid) - server_before, os.times()
    counters = {k: v - counters_before.get(k, 0.0) for k, v in subscription_counters(server).items()}
    final: list[int] = result["final"]
    converged = sum(all(s.last.get(k) == final[k] for k in s.watched) for s in clients.subs)
    behind = [(k, s.last.get(k), final[k]) for s in clients.subs for k in s.watched if s.last.get(k) != final[k]]
    clients.stop()
    await runner
    process.join(10)
    if profile is not None:
        _, err = profile.communicate(timeout=args.seconds + 60)
        summary = (
            collapsed_summary(work / "py-spy.txt") if (work / "py-spy.txt").exists() else [f"    py-spy: {err.decode()[-500:]}"]
        )
    latencies = [x for s in clients.subs for x in s.latencies]
    made_per_sub = [sum(final[k] for k in s.watched) for s in clients.subs]
    seen_per_sub = [s.seen for s in clients.subs]
    return {
        "subscribers": args.subscribers,
        "connections": args.connections,
        "query": args.query,
        "deflate": not args.no_deflate,
        "rows": args.rows,
        "changes_made": result["made"],
        "writer_seconds": result["seconds"],
        "writer_rate": result["made"] / result["seconds"],
        "deliveries": len(latencies),
        "frames": sum(s.frames for s in clients.subs),
        "frames_per_s": sum(s.frames for s in clients.subs) / result["seconds"],
        "p50_ms": 1000 * percentile(latencies, 0.50),
        "p90_ms": 1000 * percentile(latencies, 0.90),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "max_ms": 1000 * max(latencies, default=float("nan")),
        "made_per_subscriber": statistics.median(made_per_sub),
        "seen_per_subscriber_median": statistics.median(seen_per_sub),
        "seen_per_subscriber_min": min(seen_per_sub),
        "seen_per_subscriber_max": max(seen_per_sub),
        "converged": converged,
        "server_cores": server_used.cpu_s / wall,
        "server_waiting": server_used.wait_s / wall,
        "client_cores": (client_after.user + client_after.system - client_before.user - client_before.system) / wall,
        "writer_cores": result["cpu_s"] / result["seconds"],
        "load_average": [load_before, os.getloadavg()[0]],
        "counters": counters,
        "errors": clients.errors[:10] + [f"not converged (row, seen, final): {behind[:5]}"] * bool(behind),
        "profile": summary if profile is not None else None,
    }


def report(r: dict[str, Any]) -> None:
    print(
        f"\n{r['subscribers']} subscribers ({r['query']}) over {r['connections']} WebSockets "
        f"({'permessage-deflate' if r['deflate'] else 'no compression'}), {r['rows']} rows; writer "
        f"{r['changes_made']:,} changes in {r['writer_seconds']:.1f} s ({r['writer_rate']:,.0f}/s)"
    )
    print(
        f"  delivery latency (commit stamp -> frame read), {r['deliveries']:,} (subscriber, change seen): "
        f"p50 {r['p50_ms']:.0f} ms, p90 {r['p90_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, max {r['max_ms']:.0f} ms"
    )
    print(f"  deliveries: {r['frames']:,} next frames, {r['frames_per_s']:,.0f}/s")
    print(
        f"  changes per subscriber: made {r['made_per_subscriber']:,.0f} to its rows, seen median "
        f"{r['seen_per_subscriber_median']:,.0f} (min {r['seen_per_subscriber_min']:,}, max {r['seen_per_subscriber_max']:,}): "
        f"latest-state, coalesced; final state reached by {r['converged']}/{r['subscribers']} subscribers"
    )
    print(
        f"  cores: server {r['server_cores']:.2f} (+{r['server_waiting']:.2f} waiting), client {r['client_cores']:.2f}, "
        f"writer {r['writer_cores']:.2f}; load average {r['load_average'][0]:.1f} -> {r['load_average'][1]:.1f}"
    )
    print(
        "  server counters: "
        + ", ".join(f"{k.removeprefix('sluice_api_subscription_')} {v:,.0f}" for k, v in sorted(r["counters"].items()))
    )
    for error in r["errors"]:
        print(f"  error: {error}")
    if r["profile"]:
        print("  py-spy (server, measured window):")
        print("\n".join(r["profile"]))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--connections", type=int, default=50, help="WebSockets the subscriptions are spread over")
    parser.add_argument("--query", choices=("pk", "list"), default="pk")
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--rate", type=int, default=1000, help="row changes per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--drain-s", type=float, default=3.0)
    parser.add_argument(
        "--no-deflate", action="store_true", help="clients do not offer permessage-deflate (browsers and websockets do)"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the server during the measured window")
    parser.add_argument("--sluice-src", type=Path, default=REPO / "src")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="apifan-") as tmp, databases("apifan") as (my_url, pg_url):
        work = Path(tmp)
        create_ticks(my_url, args.rows)
        folder = write_project(work / "project", my_url, pg_url)
        with serve(folder, args.sluice_src.resolve(), work / "sluice.log") as server:
            wait_rows(pg_url, args.rows)
            wait_served(server)
            result = asyncio.run(measure(server, args, my_url, work))
    report(result)
    save(args.json, result)
    return result


def save(path: Path | None, result: dict[str, Any]) -> None:
    """Write ``result`` as JSON to ``path`` (its folder created) unless ``path`` is None."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
