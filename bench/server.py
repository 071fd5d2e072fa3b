"""`sluice serve` under load: the SSE event stream with 500 clients, and GET /runs/{id} with 50 clients.

A 2,000-object layered no-op DAG (bench/orchestration.py's) runs in ``sluice serve --simulate`` started
as a subprocess on a free loopback port.

* SSE: 500 clients (4 processes of 125 raw HTTP/1.1 connections, bench/sse_clients.py) connect to
  /events/stream before the run starts; the run is started with POST /orchestrate. Every client must
  receive every event of the run exactly once (the bus's own log is the reference); latency is receive
  time minus the event's ``ts`` (publish side, same machine clock), over every (client, event) pair.
  Two paces: simulated stage delays scaled so the run lasts about --paced-seconds, and a flood (delay 0).
* API: 50 keep-alive connections request GET /runs/{id} of the finished 2,000-object run for --seconds,
  then of a run in progress. The peer, measured in the same run: a minimal FastAPI app on uvicorn
  (bench/peers/fastapi_baseline.py) serving the identical JSON body from memory, as bytes and as a dict.

Server, clients and the run share the machine's cores; client and server CPU are reported so that a
client bottleneck would show.

    python bench/server.py                                   # everything, about 2 minutes
    python bench/server.py --json bench/results/server.json
    python bench/server.py --skip-flood --clients 100        # smaller
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import queue
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, astuple, dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "peers"))

from orchestration import write_project  # noqa: E402
from sluice import events as ev  # noqa: E402
from sluice.project.load import load_project  # noqa: E402
from sluice.runtime.history import run_events  # noqa: E402
from sluice.runtime.run import open_backends  # noqa: E402

HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- processes -------------------------------------------------------------------------------------


def free_port() -> int:
    """A free loopback port below the ephemeral range (the house rule: servers listen below 32768)."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found between 20000 and 32000 on 127.0.0.1")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) and of its live children, from /proc."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is the state (3rd field of stat); ppid is fields[1], utime fields[11], stime fields[12]
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


@dataclass(frozen=True)
class Usage:
    """CPU a server used, and how long its threads were runnable but waiting for a core (run-queue delay)."""

    cpu_s: float
    wait_s: float
    loop_cpu_s: float  # the main thread, where uvicorn's event loop runs
    loop_wait_s: float

    def __sub__(self, other: Usage) -> Usage:
        mine, theirs = astuple(self), astuple(other)
        return Usage(*(a - b for a, b in zip(mine, theirs, strict=True)))

    def as_dict(self, wall_s: float) -> dict[str, float]:
        return {**asdict(self), "wall_s": wall_s}


def schedstat(pid: int, tid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of one thread."""
    try:
        on_cpu, waiting, _ = (Path(f"/proc/{pid}/task/{tid}/schedstat").read_text()).split()
    except (OSError, ValueError):
        return 0.0, 0.0
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def process_usage(pid: int) -> Usage:
    waits = [schedstat(pid, int(task.name))[1] for task in Path(f"/proc/{pid}/task").iterdir()]
    loop_cpu, loop_wait = schedstat(pid, pid)
    return Usage(process_cpu_seconds(pid), sum(waits), loop_cpu, loop_wait)


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Server:
    """A web server subprocess (``sluice serve`` or the baseline) on 127.0.0.1:port."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def usage(self) -> Usage:
        return process_usage(self.process.pid)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


@contextmanager
def running_server(name: str, command: list[str], port: int, log: Path, ready_path: str = "/health") -> Iterator[Server]:
    """Start ``command``, wait until ``ready_path`` answers 200, and stop the process (group) at the end."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(name, process, port, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode} before answering:\n{server.log_tail()}")
            try:
                if httpx.get(server.url + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer {ready_path} within 90 s:\n{server.log_tail()}")
            time.sleep(0.2)
        yield server
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group of ``process`` (started with ``start_new_session``), SIGKILL after 20 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def sluice_serve(folder: Path, delay_scale: float, log: Path) -> AbstractContextManager[Server]:
    port = free_port()
    command = ["sluice", "serve", str(folder), "--host", HOST, "--port", str(port)]
    command += ["--simulate", "--delay-scale", str(delay_scale)]
    return running_server("sluice serve", command, port, log)


# --- the project and its runs ----------------------------------------------------------------------


def make_project(folder: Path, objects: int, layers: int) -> Path:
    write_project(folder, objects, layers)
    return folder


def delay_scale_for(folder: Path, seconds: float) -> float:
    """The --delay-scale that makes a simulated run last about ``seconds`` (the slowest stage dominates)."""
    project = load_project(folder)
    busiest = 0.0
    for stage in project.stages:
        count = sum(1 for obj in project.objects.values() if obj.stage == stage.name)
        busiest = max(busiest, count * stage.delay_s / stage.concurrency)
    unscaled = busiest + sum(stage.delay_s for stage in project.stages)
    return seconds / unscaled if unscaled else 0.0


def start_run(server: Server) -> str:
    answer = httpx.post(server.url + "/orchestrate", json={"targets": None, "force": True}, timeout=30)
    if answer.status_code != 202:
        raise RuntimeError(f"POST /orchestrate answered {answer.status_code}: {answer.text}")
    return str(answer.json()["run_id"])


def run_is_active(server: Server, run_id: str) -> bool:
    runs = httpx.get(server.url + "/runs", params={"limit": 5}, timeout=30).json()["runs"]
    return any(run["run_id"] == run_id and run["status"] == "running" for run in runs)


def wait_for_run(server: Server, run_id: str, timeout_s: float = 900) -> None:
    deadline = time.monotonic() + timeout_s
    while run_is_active(server, run_id):
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} still running after {timeout_s:.0f} s")
        time.sleep(0.5)


@dataclass
class BusRecord:
    """A run's events as the bus holds them: the reference every SSE client is compared with."""

    ids: np.ndarray[Any, Any]  # offsets in sluice.events, ascending
    published: np.ndarray[Any, Any]  # each event's ts (created by the coordinator or a worker)
    written: np.ndarray[Any, Any]  # when the bus stored it
    seconds: float
    status: str


def bus_record(folder: Path, run_id: str) -> BusRecord:
    project = load_project(folder)
    with open_backends(project) as backends:
        log = list(run_events(backends, project, run_id))
        wanted = {offset for offset, _ in log}
        written: dict[int, float] = {}
        offset = log[0][0]
        while len(written) < len(wanted):
            messages = backends.bus.read(ev.EVENTS_TOPIC, offset, 5000)
            written |= {m.offset: m.timestamp for m in messages if m.offset in wanted}
            offset = messages[-1].offset + 1
    started = next(e for _, e in log if isinstance(e, ev.RunStarted)).ts
    finished = [e for _, e in log if isinstance(e, ev.RunFinished)]
    if not finished:
        raise RuntimeError(f"run {run_id} has no RunFinished on the bus")
    return BusRecord(
        ids=np.array([offset for offset, _ in log], dtype=np.int64),
        published=np.array([event.ts.timestamp() for _, event in log]),
        written=np.array([written[offset] for offset, _ in log]),
        seconds=(finished[0].ts - started).total_seconds(),
        status=finished[0].status,
    )


def percentiles_ms(seconds: np.ndarray[Any, Any]) -> dict[str, float]:
    if seconds.size == 0:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    p50, p95, p99 = np.percentile(seconds, [50, 95, 99]) * 1000
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "max_ms": float(seconds.max() * 1000)}


# --- SSE -------------------------------------------------------------------------------------------


@dataclass
class ClientProcess:
    """One bench/sse_clients.py process and the JSON lines it has printed."""

    index: int
    process: subprocess.Popen[str]
    messages: queue.Queue[tuple[int, dict[str, Any]]]
    stderr: Path

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()


def forward_lines(index: int, stream: IO[str], messages: queue.Queue[tuple[int, dict[str, Any]]]) -> None:
    for line in stream:
        messages.put((index, json.loads(line)))
    messages.put((index, {"exited": True}))


def start_clients(server: Server, processes: int, connections: int, work: Path) -> list[ClientProcess]:
    messages: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
    clients = []
    per_process = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    for index, count in enumerate(per_process):
        stderr = work / f"sse-client-{index}.log"
        with stderr.open("w") as err:
            process = subprocess.Popen(
                [sys.executable, str(HERE / "sse_clients.py"), "--port", str(server.port), "--connections", str(count)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        assert process.stdout is not None
        threading.Thread(target=forward_lines, args=(index, process.stdout, messages), daemon=True).start()
        clients.append(ClientProcess(index, process, messages, stderr))
    return clients


def collect(clients: list[ClientProcess], key: str, timeout_s: float) -> dict[int, dict[str, Any]]:
    """Wait until every client process has printed a message with ``key`` (or the timeout); keyed by process."""
    messages = clients[0].messages
    found: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    while len(found) < len(clients):
        try:
            index, message = messages.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if key in message:
            found[index] = message
        elif "exited" in message and index not in found:
            raise RuntimeError(f"SSE client process {index} exited:\n{clients[index].stderr.read_text()[-3000:]}")
    return found


def measure_sse(server: Server, folder: Path, work: Path, clients: int, processes: int, grace_s: float) -> dict[str, Any]:
    """Connect the clients, run the project once, check what every client received and measure latency."""
    procs = start_clients(server, processes, clients, work)
    try:
        connected = collect(procs, "connected", 300)
        total = sum(message["connected"] for message in connected.values())
        if len(connected) < len(procs) or total < clients:
            errors = [e for message in connected.values() for e in message["errors"]]
            raise RuntimeError(f"only {total} of {clients} SSE clients connected; first errors: {errors[:3]}")
        time.sleep(1.0)  # let the server reach every stream's first read before the run begins

        server_before = server.usage()
        for proc in procs:
            proc.send("go")
        run_id = start_run(server)
        wait_for_run(server, run_id)
        finished = collect(procs, "finished", grace_s)
        server_used = server.usage() - server_before

        record = bus_record(folder, run_id)
        last = httpx.get(server.url + "/events/last", timeout=30).json()
        expected = work / f"expected-{run_id}.json"
        expected.write_text(json.dumps({"ids": record.ids.tolist()}))
        for proc in procs:
            proc.send(f"report {expected} {work / f'received-{run_id}-{proc.index}.bin'}")
        reports = collect(procs, "connections", 600)
        if len(reports) < len(procs):
            raise RuntimeError(f"only {len(reports)} of {len(procs)} SSE client processes reported")
    finally:
        for proc in procs:
            if proc.process.poll() is None:
                proc.process.kill()
            proc.process.wait()

    triples = np.concatenate([np.fromfile(work / f"received-{run_id}-{i}.bin", dtype=np.float64) for i in reports]).reshape(-1, 3)
    position = np.searchsorted(record.ids, triples[:, 0].astype(np.int64)).clip(0, record.ids.size - 1)
    known = record.ids[position] == triples[:, 0]
    arrived, read, position = triples[known, 1], triples[known, 2], position[known]
    client_cpu = sum(message["cpu_s"] for message in finished.values())
    client_wait = sum(message["wait_s"] for message in finished.values())
    client_wall = max((message["wall_s"] for message in finished.values()), default=float("nan"))
    every_run_finished = len(finished) == len(procs) and all(m["all_saw_run_finished"] for m in finished.values())
    return {
        "run_id": run_id,
        "run_status": record.status,
        "run_s": record.seconds,
        "events": len(record.ids),
        "events_last_id_matches": last.get("id") == int(record.ids[-1]),
        "clients": clients,
        "client_processes": processes,
        "clients_complete": sum(r["complete"] for r in reports.values()),
        "every_client_saw_run_finished": every_run_finished,
        "missing_pairs": sum(r["missing"] for r in reports.values()),
        "duplicate_pairs": sum(r["duplicates"] for r in reports.values()),
        "unexpected_pairs": sum(r["unexpected"] for r in reports.values()),
        "first_problem": next((r["first_problem"] for r in reports.values() if r["first_problem"]), None),
        "pairs": int(arrived.size),
        "megabytes_received": sum(r["bytes"] for r in reports.values()) / 1e6,
        "reads_per_client": sum(r["reads"] for r in reports.values()) / clients,
        "latency": percentiles_ms(arrived - record.published[position]),
        "latency_from_bus_write": percentiles_ms(arrived - record.written[position]),
        "latency_to_client_read": percentiles_ms(read - record.published[position]),
        "untimed_reads": sum(r["untimed_reads"] for r in reports.values()),
        "bus_write_after_ts": percentiles_ms(record.written - record.published),
        "last_frame_after_run_finished_s": max(r["last_frame_at"] for r in reports.values()) - float(record.published[-1]),
        "delivery_wall_s": client_wall,
        "client_cpu_s": client_cpu,
        "client_wait_s": client_wait,
        "server": server_used.as_dict(client_wall),
    }


# --- API -------------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    body_bytes: int = 0


class KeepAliveClient(asyncio.Protocol):
    """Sends the same GET again as soon as the previous answer is complete, until ``stop_at``.

    Bodies are counted, not kept, so that the client costs as little as possible.
    """

    def __init__(self, request: bytes, stop_at: float, result: LoadResult, done: asyncio.Future[None]) -> None:
        self.request = request
        self.stop_at = stop_at
        self.result = result
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.remaining = -1  # body bytes still expected; -1 while reading the head; -2 for a chunked body
        self.tail = b""
        self.began = 0.0
        self.body = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        if time.perf_counter() >= self.stop_at:
            self.transport.close()
            return
        self.head, self.remaining, self.tail, self.body = b"", -1, b"", 0
        self.began = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.remaining == -1:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            headers = self.head[:end].decode("latin-1").lower()
            data = self.head[end + 4 :]
            if not headers.startswith("http/1.1 200"):
                self.result.errors.append(headers.splitlines()[0])
            if "connection: close" in headers:
                self.result.errors.append("the server closed the connection")
            if "transfer-encoding: chunked" in headers:
                self.remaining = -2
            else:
                self.remaining = int(headers.split("content-length:")[1].split("\r\n")[0])
        self.body += len(data)
        if self.remaining == -2:
            self.tail = (self.tail + data)[-7:]
            if self.tail != b"\r\n0\r\n\r\n":
                return
        else:
            self.remaining -= len(data)
            if self.remaining > 0:
                return
        self.result.latencies.append(time.perf_counter() - self.began)
        self.result.body_bytes = self.body
        self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if time.perf_counter() < self.stop_at:
            self.result.errors.append(f"connection lost before the end: {exc}")
        if not self.done.done():
            self.done.set_result(None)


async def hammer_async(port: int, path: str, connections: int, seconds: float, gzip: bool) -> tuple[LoadResult, float]:
    loop = asyncio.get_running_loop()
    result = LoadResult()
    encoding = "Accept-Encoding: gzip\r\n" if gzip else ""
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: application/json\r\n{encoding}\r\n".encode()
    began = time.perf_counter()
    finished: list[asyncio.Future[None]] = []
    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        await loop.create_connection(functools.partial(KeepAliveClient, request, began + seconds, result, done), HOST, port)
        finished.append(done)
    await asyncio.gather(*finished)
    return result, time.perf_counter() - began


def measure_api(server: Server, path: str, connections: int, seconds: float, gzip: bool = False) -> dict[str, Any]:
    """``gzip``: ask for a gzip body (``Accept-Encoding: gzip``), as browsers, httpx and requests do."""
    server_before, own_cpu = server.usage(), own_cpu_seconds()
    result, elapsed = asyncio.run(hammer_async(server.port, path, connections, seconds, gzip))
    server_used, own_cpu = server.usage() - server_before, own_cpu_seconds() - own_cpu
    return {
        "tool": server.name,
        "path": path,
        "gzip": gzip,
        "connections": connections,
        "seconds": elapsed,
        "requests": len(result.latencies),
        "requests_per_s": len(result.latencies) / elapsed,
        "latency": percentiles_ms(np.array(result.latencies)),
        "errors": len(result.errors),
        "first_error": result.errors[0] if result.errors else None,
        "body_bytes": result.body_bytes,
        "server": server_used.as_dict(elapsed),
        "client_cpu_s": own_cpu,
    }


# --- report ----------------------------------------------------------------------------------------


def describe_usage(used: dict[str, float]) -> str:
    wall = used["wall_s"]
    return (
        f"server CPU {used['cpu_s'] / wall:.0%} of a core, its event-loop thread {used['loop_cpu_s'] / wall:.0%} on a core "
        f"and {used['loop_wait_s'] / wall:.0%} waiting for one"
    )


def print_sse(label: str, r: dict[str, Any]) -> None:
    lat, stream, bus, read = r["latency"], r["latency_from_bus_write"], r["bus_write_after_ts"], r["latency_to_client_read"]
    print(
        f"SSE {label}: run {r['run_s']:.1f} s, {r['events']:,} events, {r['clients']} clients: "
        f"{r['clients_complete']}/{r['clients']} clients got every event exactly once "
        f"(pairs missing {r['missing_pairs']:,}, twice {r['duplicate_pairs']:,}, foreign {r['unexpected_pairs']:,})"
    )
    rows = (
        ("ts -> client socket", lat),
        ("  bus write -> socket", stream),
        ("  ts -> bus write", bus),
        ("ts -> client read", read),
    )
    for name, values in rows:
        print(
            f"    {name:<22} p50 {values['p50_ms']:>7,.0f} ms  p95 {values['p95_ms']:>7,.0f} ms  "
            f"p99 {values['p99_ms']:>7,.0f} ms  max {values['max_ms']:>7,.0f} ms"
        )
    wall = r["delivery_wall_s"]
    print(
        f"    the last frame arrived {r['last_frame_after_run_finished_s']:,.2f} s after RunFinished was published; "
        f"{r['megabytes_received']:,.0f} MB in {wall:,.1f} s, {r['reads_per_client']:,.0f} reads per client; "
        f"{describe_usage(r['server'])}; "
        f"{r['client_processes']} client processes {r['client_cpu_s'] / wall:.0%} of a core "
        f"and {r['client_wait_s'] / wall:.0%} waiting for one"
    )
    if r["first_problem"]:
        print(f"    first problem: {r['first_problem']}")
    if r["untimed_reads"]:
        print(f"    {r['untimed_reads']:,} reads had no kernel timestamp: their read time stands in")


def print_api(label: str, r: dict[str, Any], reference: dict[str, Any] | None = None) -> None:
    lat = r["latency"]
    ratio = f"{reference['requests_per_s'] / r['requests_per_s']:>5.2f}x" if reference else "     "
    errors = f"; {r['errors']} errors, first: {r['first_error']}" if r["errors"] else ""
    figures = f"{r['requests_per_s']:>7,.0f} {ratio} {lat['p50_ms']:>7,.1f} {lat['p99_ms']:>7,.1f} {lat['max_ms']:>7,.1f}"
    print(
        f"    {label:<36} {figures}  {r['requests']:,} x {r['body_bytes'] / 1000:,.0f} kB; {describe_usage(r['server'])}; "
        f"client {r['client_cpu_s'] / r['seconds']:.0%}{errors}"
    )


def measure_api_against_peer(server: Server, run_id: str, args: argparse.Namespace, work: Path, results: dict[str, Any]) -> None:
    """GET /runs/{id} of a finished run on sluice and on the minimal FastAPI app, then of a run in progress."""
    path = f"/runs/{run_id}"
    body = httpx.get(server.url + path, timeout=60)
    detail = body.json()
    assert len(detail["objects"]) == args.objects, f"GET {path} lists {len(detail['objects'])} objects"
    (work / "run.json").write_bytes(body.content)
    print(
        f"API: {args.api_clients} keep-alive clients, GET /runs/{{id}} of the {args.objects:,}-object run, "
        f"{args.seconds:.0f} s each\n    {'server':<36} {'req/s':>7} {'sluice':>6} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
    )
    api = measure_api(server, path, args.api_clients, args.seconds)
    results["api_sluice_finished_run"] = api
    print_api("sluice, finished run", api)
    api_gzip = measure_api(server, path, args.api_clients, args.seconds, gzip=True)
    results["api_sluice_finished_run_gzip"] = api_gzip
    print_api("sluice, finished run, gzip", api_gzip)

    port = free_port()
    command = [sys.executable, str(HERE / "peers" / "fastapi_baseline.py"), str(work / "run.json"), "--port", str(port)]
    with running_server("fastapi baseline", command, port, work / "baseline.log") as baseline:
        for label, key, base_path, gzip, ours in (
            ("minimal FastAPI, bytes from memory", "api_baseline_bytes", path, False, api),
            ("minimal FastAPI, dict from memory", "api_baseline_dict", "/dict" + path, False, api),
            ("minimal FastAPI + GZipMiddleware, gzip", "api_baseline_gzip", "/gzip" + path, True, api_gzip),
        ):
            peer = measure_api(baseline, base_path, args.api_clients, args.seconds, gzip)
            results[key] = peer
            results[f"ratio_{key}"] = ours["requests_per_s"] / peer["requests_per_s"]
            print_api(label, peer, ours)

    active_id = start_run(server)
    time.sleep(1.0)
    active = measure_api(server, f"/runs/{active_id}", args.api_clients, args.seconds)
    active["run_active_until_the_end"] = run_is_active(server, active_id)
    results["api_sluice_active_run"] = active
    print_api(f"sluice, active run{'' if active['run_active_until_the_end'] else ' (ended early)'}", active)
    wait_for_run(server, active_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--clients", type=int, default=500, help="SSE clients")
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--paced-seconds", type=float, default=15.0, help="how long the paced run should last")
    parser.add_argument("--grace", type=float, default=300.0, help="seconds to wait for the clients after the run ends")
    parser.add_argument("--api-clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each API measurement")
    parser.add_argument("--skip-api", action="store_true")
    parser.add_argument("--skip-flood", action="store_true")
    parser.add_argument("--json", type=Path, help="Also write the results to this file.")
    args = parser.parse_args()

    if shutil.which("sluice") is None:
        sys.exit("the 'sluice' command is not on PATH: pip install -e . first")
    work = Path(tempfile.mkdtemp(prefix="sluice-bench-server-"))
    results: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cores": os.cpu_count(), "objects": args.objects}
    print(
        f"{args.objects:,} no-op objects in {args.layers} layers; server, {args.client_processes} SSE client processes "
        f"and the API client share {os.cpu_count()} cores"
    )
    try:
        paced = make_project(work / "paced", args.objects, args.layers)
        scale = delay_scale_for(paced, args.paced_seconds)
        with sluice_serve(paced, scale, work / "serve-paced.log") as server:
            sse = measure_sse(server, paced, work, args.clients, args.client_processes, args.grace)
            results["sse_paced"] = {"delay_scale": scale, **sse}
            print_sse(f"paced (--delay-scale {scale:.3f})", sse)
            if not args.skip_api:
                measure_api_against_peer(server, sse["run_id"], args, work, results)
        if not args.skip_flood:
            flood = make_project(work / "flood", args.objects, args.layers)
            with sluice_serve(flood, 0.0, work / "serve-flood.log") as server:
                sse = measure_sse(server, flood, work, args.clients, args.client_processes, args.grace)
                results["sse_flood"] = {"delay_scale": 0.0, **sse}
                print_sse("flood (--delay-scale 0)", sse)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
