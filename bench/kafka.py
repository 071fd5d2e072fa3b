"""Sluice over Kafka against Sluice over its embedded bus, measured in the same run.

1. **Distributed orchestration**: the layered no-op DAG of ``orchestration.py`` (5,000 objects, every
   object of layer k > 0 with two parents in layer k - 1) run by a coordinator process
   (``sluice run --workers external``) and 2 ``sluice worker`` processes per stage, over Kafka and over
   the embedded bus. Objects/s from ``RunStarted`` to ``RunFinished`` (event timestamps) and the
   per-object latency from the last parent's ``ObjectLoaded`` to the child's ``ObjectStarted``, p50/p99:
   the median of ``--rounds`` runs per bus, the buses taking turns going first, after untimed Kafka runs
   (at least ``--warmup`` of them, for at least ``--warmup-s`` seconds: a broker's JVM compiles its request
   paths during its first minutes of traffic; a broker in service has long done so). With each run, the CPU
   time the coordinator process, the worker processes and the broker (found by its port on this machine)
   used between ``RunStarted`` and ``RunFinished`` (``process_cpu.py``). Then the same latency on a chain of
   ``--chain`` objects (one per layer), where no object queues behind another: the floor one hop over each bus
   puts under a child's start.
2. **Raw bus throughput**: the same encoded ``ObjectLoaded`` payloads published in batches, then
   consumed by a consumer group (commit after each poll), events/s for ``KafkaBus`` and ``EmbeddedBus``.

    python bench/kafka.py                              # SLUICE_TEST_KAFKA_URL, else the test broker (started if needed)
    python bench/kafka.py --objects 2000 --events 50000 --json bench/results/kafka.json

Kafka runs in a namespace of its own (``?namespace=bench-...``), so nothing else on the broker is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from orchestration import parent_latencies_ms, percentile, run_seconds, write_project  # noqa: E402
from process_cpu import CpuSampler, listening_pid  # noqa: E402
from sluice import events as ev  # noqa: E402
from sluice.bus import names  # noqa: E402
from sluice.bus.base import Bus  # noqa: E402
from sluice.bus.registry import open_bus  # noqa: E402
from sluice.project.load import load_project  # noqa: E402
from sluice.runtime.history import run_events  # noqa: E402
from sluice.runtime.run import open_backends  # noqa: E402

SLUICE = [sys.executable, "-m", "sluice"]
STAGES = ("ingest", "standardize", "application")


def start_kafka() -> str:
    """The broker's URL, starting it with scripts/servers/kafka.sh when it is not running."""
    done = subprocess.run(
        [str(REPO / "scripts" / "servers" / "kafka.sh"), "start"], capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"scripts/servers/kafka.sh start failed:\n{done.stdout}{done.stderr}")
    return done.stdout.strip().splitlines()[-1].strip()


def namespaced(kafka_url: str) -> str:
    return kafka_url + ("&" if "?" in kafka_url else "?") + f"namespace=bench-{uuid.uuid4().hex[:10]}"


def delete_namespace(bus: Bus) -> None:
    """Delete the topics and consumer groups of a Kafka bus's namespace (many topics slow a broker's restart)."""
    from sluice.bus.kafka import KafkaBus

    if not isinstance(bus, KafkaBus) or not bus.namespace:
        return
    prefix = bus.kafka_name("")
    topics = [t for t in bus.admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    for future in bus.admin.delete_topics(topics, operation_timeout=10).values() if topics else ():
        future.result(timeout=30)
    groups = [g.group_id for g in bus.admin.list_consumer_groups(request_timeout=10).result(timeout=30).valid]
    groups = [g for g in groups if g.startswith(prefix)]
    for future in bus.admin.delete_consumer_groups(groups, request_timeout=10).values() if groups else ():
        future.result(timeout=30)


# ----- 1. distributed orchestration ------------------------------------------------------------


def wait_until_joined(bus_url: str, per_stage: int, timeout_s: float = 120) -> None:
    """On Kafka: wait until every stage's group is stable with its workers (no rebalance during the run)."""
    if not bus_url.startswith("kafka:"):
        return
    from confluent_kafka import ConsumerGroupState, KafkaException

    from sluice.bus.kafka import KafkaBus

    bus = open_bus(bus_url)
    assert isinstance(bus, KafkaBus)
    groups = [bus.kafka_name(names.work_group(stage)) for stage in STAGES]
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                described = [f.result() for f in bus.admin.describe_consumer_groups(groups, request_timeout=10).values()]
            except KafkaException:  # a fresh broker: its group coordinator is still loading (NOT_COORDINATOR)
                time.sleep(0.2)
                continue
            if all(g.state == ConsumerGroupState.STABLE and len(g.members) == per_stage for g in described):
                return
            time.sleep(0.2)
    finally:
        bus.close()
    raise SystemExit(f"the workers did not join their groups on {bus_url} within {timeout_s:.0f}s")


@contextmanager
def worker_processes(folder: Path, bus_url: str, per_stage: int, logs: Path) -> Iterator[list[int]]:
    """Start ``per_stage`` ``sluice worker`` processes per stage; yields their pids, stops them on exit."""
    processes = []
    for stage in STAGES:
        for i in range(per_stage):
            with (logs / f"worker-{stage}-{i}.log").open("wb") as log:
                command = [*SLUICE, "worker", str(folder), "--stage", stage, "--bus", bus_url, "--log-level", "warning"]
                processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
    try:
        yield [process.pid for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def measure_distributed(
    bus_name: str, bus_url: str | None, objects: int, layers: int, per_stage: int, broker_pid: int | None = None
) -> dict[str, Any]:
    """One run of the layered DAG by a coordinator process and ``per_stage`` worker processes per stage; with the CPU
    seconds the coordinator process, the worker processes and the broker (``broker_pid``, when known) used between
    the run's ``RunStarted`` and ``RunFinished`` (``process_cpu.py``)."""
    folder = Path(tempfile.mkdtemp(prefix="sluice-bench-kafka-"))
    try:
        project = load_project(write_project(folder / "project", objects, layers))
        url = bus_url or project.resolve_bus_url()
        logs = folder / "logs"
        logs.mkdir()
        with worker_processes(project.root, url, per_stage, logs) as worker_pids:
            wait_until_joined(url, per_stage)
            command = [*SLUICE, "run", str(project.root), "--workers", "external", "--force", "--json", "--bus", url]
            run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            broker = [broker_pid] if broker_pid else []
            sampler = CpuSampler({"coordinator": lambda: [run.pid], "workers": lambda: worker_pids, "broker": lambda: broker})
            sampler.start()
            try:
                stdout, stderr = run.communicate(timeout=1800)
            finally:
                sampler.stop()
        summary = json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])
        if summary["status"] != "succeeded":
            raise SystemExit(f"the {bus_name} run {summary['status']}:\n{stderr[-2000:]}")
        with open_backends(project, url) as backends:
            log = [event for _, event in run_events(backends, project, summary["run_id"])]
            hops = ready_hops_ms(backends.bus, summary["run_id"])
            delete_namespace(backends.bus)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    seconds = run_seconds(log)
    started = next(e for e in log if isinstance(e, ev.RunStarted)).ts.timestamp()
    cpu = sampler.between(started, started + seconds)
    latencies = parent_latencies_ms(project, log, ev.ObjectStarted)
    to_ready = parent_latencies_ms(project, log, ev.ObjectReady)  # the worker's publish and the coordinator
    ready_at = {e.object_id: e.ts for e in reversed(log) if isinstance(e, ev.ObjectReady)}  # the first of each
    started_at = {e.object_id: e.ts for e in reversed(log) if isinstance(e, ev.ObjectStarted)}
    to_started = [  # the coordinator's publish, the broker and the worker's queue
        (started_at[oid] - ready_at[oid]).total_seconds() * 1000 for oid in started_at if project.objects[oid].parents
    ]
    workers = {e.worker for e in log if isinstance(e, ev.ObjectStarted)}
    return {
        "bus": bus_name,
        "objects": objects,
        "workers_per_stage": per_stage,
        "worker_processes_used": len(workers),
        "seconds": seconds,
        "objects_per_s": objects / seconds,
        "latency_ms_p50": percentile(latencies, 0.50),
        "latency_ms_p99": percentile(latencies, 0.99),
        "loaded_to_ready_ms_p50": percentile(to_ready, 0.50),
        "ready_to_started_ms_p50": percentile(to_started, 0.50),
        "ready_to_written_ms_p50": percentile(hops[0], 0.50),
        "written_to_started_ms_p50": percentile(hops[1], 0.50),
        "events": len(log),
        **{f"cpu_ms_{name}": cpu.get(name, float("nan")) * 1000 for name in ("coordinator", "workers", "broker")},
    }


def ready_hops_ms(bus: Bus, run_id: str) -> tuple[list[float], list[float]]:
    """``ready -> started`` in two, per object, from the log's messages: ms from an ``ObjectReady``'s own timestamp
    (the coordinator decided it) to its message's timestamp (the bus took it: the embedded log's write time; on
    Kafka the producer's CreateTime, stamped when the coordinator hands the batch to its producer, the copy on the
    work topic just before), and from there to the ``ObjectStarted`` (transport, the worker's fetch, its queue and
    its dispatch)."""
    ready: dict[int, tuple[float, float]] = {}
    started: dict[int, float] = {}
    offset = 0
    while batch := bus.read(ev.EVENTS_TOPIC, offset, 5000):
        offset = batch[-1].offset + 1
        for message in batch:
            event = ev.decode(message.value)
            if event.run_id != run_id:
                continue
            if isinstance(event, ev.ObjectReady):
                ready.setdefault(event.object_id, (event.ts.timestamp(), message.timestamp))
            elif isinstance(event, ev.ObjectStarted):
                started.setdefault(event.object_id, event.ts.timestamp())
    to_written = [(written - decided) * 1000 for decided, written in ready.values()]
    to_started = [(started[oid] - ready[oid][1]) * 1000 for oid in started if oid in ready]
    return to_written, to_started


# ----- 2. raw bus throughput -------------------------------------------------------------------


def payloads(count: int) -> list[tuple[str | None, bytes]]:
    """Encoded ObjectLoaded events, keyed by object id as Sluice publishes them."""
    out = []
    for i in range(count):
        oid = 1_000_000 + i
        event = ev.ObjectLoaded(run_id="bench", object_id=oid, stage="ingest", worker="bench@host:1:1", rows=i, duration_s=0.001)
        out.append((str(oid), ev.encode(event)))
    return out


def measure_throughput(bus_name: str, bus: Bus, messages: list[tuple[str | None, bytes]], batch: int) -> dict[str, Any]:
    topic = f"bench.throughput.{uuid.uuid4().hex[:8]}"
    bus.create_topic(topic, 1)
    started = time.perf_counter()
    for i in range(0, len(messages), batch):
        bus.publish(topic, messages[i : i + batch])
    published_s = time.perf_counter() - started
    consumer = bus.consumer(f"bench.{uuid.uuid4().hex[:8]}", topic)
    received = 0
    started = time.perf_counter()
    deadline = time.monotonic() + 600
    while received < len(messages) and time.monotonic() < deadline:
        got = consumer.poll(5000, timeout_s=1.0)
        if got:
            consumer.commit(got)
            received += len(got)
    consumed_s = time.perf_counter() - started
    consumer.close()
    delete_namespace(bus)
    if received < len(messages):
        raise SystemExit(f"{bus_name}: consumed {received} of {len(messages)} messages in 10 minutes")
    return {
        "bus": bus_name,
        "events": len(messages),
        "batch": batch,
        "payload_bytes": sum(len(v) for _, v in messages) // len(messages),
        "published_per_s": len(messages) / published_s,
        "consumed_per_s": len(messages) / consumed_s,
    }


# ----- report ----------------------------------------------------------------------------------


def median_run(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over rounds (the other fields from the first round)."""
    out = dict(measured[0])
    for key, value in measured[0].items():
        if isinstance(value, float):
            out[key] = statistics.median(r[key] for r in measured)
    return out


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--chain", type=int, default=100, help="objects of the chain measured after the DAG (0: none)")
    parser.add_argument("--workers-per-stage", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="distributed runs per bus (medians reported)")
    parser.add_argument("--warmup", type=int, default=1, help="at least this many untimed distributed Kafka runs first")
    parser.add_argument(
        "--warmup-s", type=float, default=60.0, help="... and untimed Kafka runs for at least this long (seconds)"
    )
    parser.add_argument("--events", type=int, default=200_000, help="messages for the raw throughput test")
    parser.add_argument("--batch", type=int, default=1000, help="messages per publish call")
    parser.add_argument(
        "--kafka", help="Kafka URL (default: SLUICE_TEST_KAFKA_URL, else the test broker, started by scripts/servers/kafka.sh)"
    )
    parser.add_argument("--json", type=Path, help="Also write the results to this file.")
    args = parser.parse_args()

    kafka_url = args.kafka or os.environ.get("SLUICE_TEST_KAFKA_URL", "").strip() or start_kafka()
    results: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "kafka": kafka_url}

    broker_pid = listening_pid(urlsplit(kafka_url).port or 9092)  # None: a broker elsewhere (no CPU figure)

    def distributed(bus_name: str) -> dict[str, Any]:
        url = namespaced(kafka_url) if bus_name == "kafka" else None
        return measure_distributed(bus_name, url, args.objects, args.layers, args.workers_per_stage, broker_pid)

    # Untimed: a broker's JIT compiles the paths a broker in service has long compiled. On this 2-core machine it
    # kept compiling for minutes after a start, and a run's p50 went 224 -> 146 -> 71 ms over the first three
    # benches of a fresh broker (stop 32's note).
    warmed, warm_start = 0, time.monotonic()
    while warmed < args.warmup or time.monotonic() - warm_start < args.warmup_s:
        distributed("kafka")
        warmed += 1
    rounds: dict[str, list[dict[str, Any]]] = {"embedded": [], "kafka": []}
    for i in range(args.rounds):
        for bus_name in ("embedded", "kafka") if i % 2 == 0 else ("kafka", "embedded"):
            rounds[bus_name].append(distributed(bus_name))
    runs = {name: median_run(measured) for name, measured in rounds.items()}
    results["distributed"] = runs
    results["distributed_rounds"] = rounds
    print(
        f"distributed run: {args.objects:,} no-op objects, {args.layers} layers, coordinator + "
        f"{args.workers_per_stage} worker processes per stage; median of {args.rounds} rounds "
        f"(the buses take turns going first; {warmed} untimed Kafka runs in {time.monotonic() - warm_start:.0f} s before)"
    )
    for name, measured in rounds.items():
        print(f"  {name} p50 per round, ms: " + ", ".join(f"{r['latency_ms_p50']:.1f}" for r in measured))
    chains: dict[str, list[dict[str, Any]]] = {"embedded": [], "kafka": []}
    for i in range(args.rounds if args.chain else 0):
        for bus_name in ("embedded", "kafka") if i % 2 == 0 else ("kafka", "embedded"):
            url = namespaced(kafka_url) if bus_name == "kafka" else None
            chains[bus_name].append(measure_distributed(bus_name, url, args.chain, args.chain, args.workers_per_stage))
    results["chain"] = {name: median_run(measured) for name, measured in chains.items() if measured}
    print(f"{'bus':<10} {'objects/s':>10} {'seconds':>8} {'p50 ms':>8} {'p99 ms':>8}   (latency: parent loaded -> child started)")
    for name, r in runs.items():
        p50, p99 = r["latency_ms_p50"], r["latency_ms_p99"]
        print(f"{name:<10} {r['objects_per_s']:>10,.0f} {r['seconds']:>8.2f} {p50:>8.1f} {p99:>8.1f}")
    print(
        "latency split, p50 ms: parent loaded -> child ready (worker publish, coordinator) | ready -> started "
        "(= ready -> written to the bus | written -> started)"
    )
    for name, r in runs.items():
        print(
            f"{name:<10} {r['loaded_to_ready_ms_p50']:>8.1f} | {r['ready_to_started_ms_p50']:>8.1f} "
            f"(= {r['ready_to_written_ms_p50']:.1f} | {r['written_to_started_ms_p50']:.1f})"
        )
    print("CPU inside the run (RunStarted -> RunFinished), ms: coordinator process | worker processes | broker")
    for name, r in runs.items():
        cpus = os.cpu_count() or 1
        broker = "-" if name == "embedded" or broker_pid is None else f"{r['cpu_ms_broker']:.0f}"
        print(
            f"{name:<10} {r['cpu_ms_coordinator']:>8.0f} | {r['cpu_ms_workers']:>8.0f} | {broker:>8} "
            f"(this machine's {cpus} CPUs give {cpus * r['seconds'] * 1000:.0f} in a run this long)"
        )
    for name, r in results["chain"].items():
        print(
            f"{name:<10} chain of {args.chain} objects (nothing queues): parent loaded -> child started "
            f"p50 {r['latency_ms_p50']:.1f} ms, p99 {r['latency_ms_p99']:.1f} ms"
        )
    k, e = runs["kafka"], runs["embedded"]
    print(
        f"kafka / embedded: objects/s {ratio(k['objects_per_s'], e['objects_per_s'])}, "
        f"p50 {ratio(k['latency_ms_p50'], e['latency_ms_p50'])}, p99 {ratio(k['latency_ms_p99'], e['latency_ms_p99'])}"
    )
    verdict = "meets" if k["objects_per_s"] >= 1000 else "MISSES"
    print(f"target over Kafka: >= 1,000 objects/s: {verdict} ({k['objects_per_s']:,.0f})")
    results["kafka_meets_1000_objects_per_s"] = k["objects_per_s"] >= 1000
    verdict = "meets" if k["latency_ms_p50"] <= 50 else "MISSES"
    print(f"target over Kafka: p50 <= 50 ms: {verdict} ({k['latency_ms_p50']:.1f} ms)")
    results["kafka_meets_p50_50_ms"] = k["latency_ms_p50"] <= 50

    messages = payloads(args.events)
    folder = Path(tempfile.mkdtemp(prefix="sluice-bench-bus-"))
    embedded = open_bus(f"sqlite:///{folder / 'bus.db'}")
    kafka = open_bus(namespaced(kafka_url))
    try:
        raw = {
            "embedded": measure_throughput("embedded", embedded, messages, args.batch),
            "kafka": measure_throughput("kafka", kafka, messages, args.batch),
        }
    finally:
        embedded.close()
        kafka.close()
        shutil.rmtree(folder, ignore_errors=True)
    results["throughput"] = raw
    size = raw["kafka"]["payload_bytes"]
    print(f"\nraw bus throughput: {args.events:,} ObjectLoaded events (~{size} bytes), published in batches of {args.batch:,}")
    print(f"{'bus':<10} {'published/s':>12} {'consumed/s':>12}")
    for name, r in raw.items():
        print(f"{name:<10} {r['published_per_s']:>12,.0f} {r['consumed_per_s']:>12,.0f}")
    rk, re_ = raw["kafka"], raw["embedded"]
    print(
        f"kafka / embedded: published {ratio(rk['published_per_s'], re_['published_per_s'])}, "
        f"consumed {ratio(rk['consumed_per_s'], re_['consumed_per_s'])}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
