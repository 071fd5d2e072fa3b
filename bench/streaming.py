"""Streaming ingestion (issue 13): Kafka into the lake with Sluice's micro-batcher and with plain Spark Structured
Streaming, same broker, same topic, same machine, same run.

1. **Throughput**: a topic of ``--records`` (10,000,000) JSON records of about 200 bytes (2 partitions; loaded
   once with pre-encoded values and reused while it holds exactly that many) drained from offset 0 to the end
   into the lake, records/s. Sluice: a project with one streaming object (``run_stream`` until every record is
   committed, in a process of its own). Spark: the same job in plain PySpark, in a process of its own (Kafka
   source, ``from_json`` with the same schema, Parquet sink into a folder, zstd like the lake,
   ``trigger(availableNow=True)``), timed from the query's start (the session's start-up is not counted).
   Aims: Sluice >= 2x Spark and >= 200,000 records/s. Each side's CPU seconds (user + system, Sluice's process;
   Spark's driver JVM and Python process, during the query) give records per CPU second too: on a shared,
   busy machine wall-clock rates follow the load, CPU seconds much less.
2. **Memory**: peak RSS of each process while it drains the backlog (Sluice: the Python process; Spark: its
   driver JVM plus the Python process).
3. **Latency** from produce to visible in the lake at a steady ``--rate`` (10,000 records/s) for
   ``--seconds``, Sluice's streaming object with a 1 s trigger: each record carries its produce time
   (``produced_ms``); the lake's manifest is polled every 20 ms and each newly committed file's records get
   visible time - produce time; p50 / p99 / max (aim p99 <= 2 s).

    python bench/streaming.py                      # 10 M records: loads the topic the first time (about 1 minute)
    python bench/streaming.py --records 1000000    # quicker
    python bench/streaming.py --only latency --seconds 10

Needs the test broker (``scripts/servers/kafka.sh``, started if needed), PySpark, Java and Spark's Kafka
connector (``scripts/spark-kafka.sh``, run if needed). Work files go to ``.tmp/bench/streaming/``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = REPO / ".tmp" / "bench" / "streaming"
PARTITIONS = 2
SCHEMA = {
    "id": "int64",
    "user": "string",
    "amount": "float64",
    "currency": "string",
    "country": "string",
    "status": "string",
    "ts": "string",
    "produced_ms": "int64",
    "note": "string",
}
SPARK_DDL = (
    "id BIGINT, user STRING, amount DOUBLE, currency STRING, country STRING, status STRING, ts STRING, "
    "produced_ms BIGINT, note STRING"
)
COUNTRIES = ("FR", "DE", "IT", "ES", "NL", "BE", "PT", "PL")
STATUSES = ("settled", "pending", "refunded", "failed")


def value(i: int, produced_ms: int) -> bytes:
    """Record ``i``: about 200 bytes of JSON."""
    return (
        f'{{"id":{i},"user":"user_{i % 100_000:06d}","amount":{(i * 37) % 100_000 / 100:.2f},"currency":"EUR",'
        f'"country":"{COUNTRIES[i % 8]}","status":"{STATUSES[i % 4]}","ts":"2026-11-30T{i // 3_600_000 % 24:02d}:'
        f'{i // 60_000 % 60:02d}:{i // 1000 % 60:02d}.{i % 1000:03d}Z","produced_ms":{produced_ms},'
        f'"note":"order {i:09d} shipped to the customer"}}'
    ).encode()


# ----- broker and topic ------------------------------------------------------------------------


def kafka_url() -> str:
    """The broker's URL (SLUICE_TEST_KAFKA_URL, else scripts/servers/kafka.sh start)."""
    if os.environ.get("SLUICE_TEST_KAFKA_URL"):
        return os.environ["SLUICE_TEST_KAFKA_URL"]
    done = subprocess.run(
        [str(REPO / "scripts" / "servers" / "kafka.sh"), "start"], capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"scripts/servers/kafka.sh start failed:\n{done.stdout}{done.stderr}")
    return done.stdout.strip().splitlines()[-1].strip()


def topic_records(servers: str, topic: str) -> int | None:
    """Records held by ``topic`` (high - low watermarks over its partitions), None when it does not exist."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": servers, "group.id": f"bench-{uuid.uuid4().hex[:8]}"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return None
        total = 0
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def backlog_topic(servers: str, records: int) -> str:
    """``sluice-bench-streaming-<records>``, loaded once with ``records`` pre-encoded values and reused."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"sluice-bench-streaming-{records}"
    if topic_records(servers, topic) == records:
        print(f"topic {topic}: {records:,} records already there, reused")
        return topic
    admin = AdminClient({"bootstrap.servers": servers})
    if topic in admin.list_topics(timeout=10).topics:
        admin.delete_topics([topic])[topic].result(60)
        time.sleep(2)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1, config={"retention.ms": "-1"})])[topic].result(60)
    started = time.monotonic()
    producer = Producer(
        {
            "bootstrap.servers": servers,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )
    chunk = 100_000
    now_ms = int(time.time() * 1000)
    for start in range(0, records, chunk):
        values = [value(i, now_ms) for i in range(start, min(records, start + chunk))]
        for offset, encoded in enumerate(values):
            while True:
                try:
                    producer.produce(topic, encoded, partition=(start + offset) % PARTITIONS)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
    if producer.flush(300) != 0:
        raise SystemExit(f"the broker did not acknowledge every record of {topic}")
    took = time.monotonic() - started
    print(f"topic {topic}: loaded {records:,} records in {took:.1f} s ({records / took:,.0f} records/s)")
    return topic


# ----- Sluice ----------------------------------------------------------------------------------


def write_project(root: Path, url: str, topic: str, trigger: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    project = {
        "name": "streaming_bench",
        "connections": {"events": url},
        "objects": [
            {
                "id": 1001,
                "name": "events",
                "source": {"type": "kafka", "connection": "events", "topic": topic, "schema": SCHEMA},
                "streaming": {"trigger": {"interval": trigger}},
            }
        ],
    }
    path = root / "sluice.yaml"
    path.write_text(json.dumps(project, indent=2))
    return path


def child_sluice(project_file: str, lake: str, records: int) -> dict[str, Any]:
    """In a process of its own: drain ``records`` records with the micro-batcher; seconds and peak RSS."""
    from sluice.lake.local import LocalLake
    from sluice.project.load import load_project
    from sluice.streaming.loop import run_stream

    project = load_project(project_file)
    started = time.monotonic()
    status = run_stream(project, 1001, lake=LocalLake(Path(lake)), until=lambda s: s.records >= records)
    took = time.monotonic() - started
    batches = status.last_batch.batch if status.last_batch else 0
    return {"seconds": took, "records": status.records, "batches": batches, "peak_rss_mb": peak_rss_mb(), "cpu_s": cpu_s()}


def child_spark(servers: str, topic: str, out: str, records: int) -> dict[str, Any]:
    """In a process of its own: the same job in plain Spark Structured Streaming; seconds (query only) and peak RSS."""
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from sluice.transforms.spark_session import kafka_jars

    session = (
        SparkSession.builder.master("local[2]")
        .appName("bench-streaming")
        .config("spark.jars", ",".join(kafka_jars()))
        .config("spark.sql.parquet.compression.codec", "zstd")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    raw = (
        session.readStream.format("kafka")
        .option("kafka.bootstrap.servers", servers)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
    )
    rows = raw.select(F.from_json(F.col("value").cast("string"), SPARK_DDL).alias("v")).select("v.*")
    jvm = session.sparkContext._gateway.proc.pid
    cpu_before = cpu_s() + proc_cpu_s(jvm)
    started = time.monotonic()
    query = (
        rows.writeStream.format("parquet")
        .option("path", f"{out}/data")
        .option("checkpointLocation", f"{out}/checkpoint")
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    took = time.monotonic() - started
    used = cpu_s() + proc_cpu_s(jvm) - cpu_before
    written = session.read.parquet(f"{out}/data").count()
    jvm_rss = jvm_peak_rss_mb(session)
    session.stop()
    return {"seconds": took, "records": written, "peak_rss_mb": peak_rss_mb(), "jvm_peak_rss_mb": jvm_rss, "cpu_s": used}


def cpu_s() -> float:
    """CPU seconds (user + system) of this process so far, every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM): not ``ru_maxrss``, which Linux carries over an exec from the memory map it
    replaces (a child started by vfork would report its parent's peak)."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def jvm_peak_rss_mb(session: Any) -> float | None:
    """VmHWM of the driver JVM (the py4j gateway's process)."""
    proc = getattr(session.sparkContext._gateway, "proc", None)
    if proc is None:
        return None
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def in_child(*args: str) -> dict[str, Any]:
    """Run this script's ``--child`` mode in a new process; its JSON result."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} run failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def with_rates(result: dict[str, Any], records: int) -> dict[str, Any]:
    """``result`` with records/s (wall clock) and records per CPU second."""
    return {**result, "records_per_s": records / result["seconds"], "records_per_cpu_s": records / result["cpu_s"]}


def throughput(url: str, servers: str, records: int) -> dict[str, Any]:
    topic = backlog_topic(servers, records)
    results: dict[str, Any] = {"records": records, "topic": topic}
    run = WORK / f"run-{uuid.uuid4().hex[:8]}"
    try:
        project = write_project(run / "project", url, topic, "1s")
        results["sluice"] = sluice = with_rates(in_child("sluice", str(project), str(run / "lake"), str(records)), records)
        print(
            f"Sluice micro-batcher: {records:,} records in {sluice['seconds']:.1f} s = {sluice['records_per_s']:,.0f} records/s, "
            f"{sluice['batches']} micro-batches, {sluice['cpu_s']:.1f} CPU s = {sluice['records_per_cpu_s']:,.0f} records per "
            f"CPU second, peak RSS {sluice['peak_rss_mb']:.0f} MB"
        )
        results["spark"] = spark = with_rates(in_child("spark", servers, topic, str(run / "spark"), str(records)), records)
        print(
            f"plain Spark Structured Streaming: {spark['records']:,} records in {spark['seconds']:.1f} s = "
            f"{spark['records_per_s']:,.0f} records/s, {spark['cpu_s']:.1f} CPU s (driver JVM + Python) = "
            f"{spark['records_per_cpu_s']:,.0f} records per CPU second, peak RSS driver JVM "
            f"{spark['jvm_peak_rss_mb'] or 0:.0f} MB + Python {spark['peak_rss_mb']:.0f} MB"
        )
        ratio = sluice["records_per_s"] / spark["records_per_s"]
        cpu_ratio = sluice["records_per_cpu_s"] / spark["records_per_cpu_s"]
        results["ratio"], results["cpu_ratio"] = ratio, cpu_ratio
        print(
            f"ratio Sluice / Spark: {ratio:.2f}x in records/s (aim >= 2x: {'met' if ratio >= 2 else 'missed'}), "
            f"{cpu_ratio:.2f}x in records per CPU second; "
            f"Sluice {'>=' if sluice['records_per_s'] >= 200_000 else '<'} 200,000 records/s"
        )
    finally:
        shutil.rmtree(run, ignore_errors=True)
    return results


# ----- latency ---------------------------------------------------------------------------------


def child_stream(project_file: str, lake: str, stop_file: str) -> dict[str, Any]:
    """In a process of its own: run the streaming object until ``stop_file`` appears."""
    from sluice.lake.local import LocalLake
    from sluice.project.load import load_project
    from sluice.streaming.loop import run_stream

    project = load_project(project_file)
    status = run_stream(project, 1001, lake=LocalLake(Path(lake)), until=lambda s: Path(stop_file).exists())
    return {"records": status.records, "peak_rss_mb": peak_rss_mb()}


def latency(url: str, servers: str, rate: int, seconds: float) -> dict[str, Any]:
    import pyarrow.parquet as pq
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from sluice.lake.local import LocalLake

    topic = f"sluice-bench-latency-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": servers})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(60)
    run = WORK / f"latency-{uuid.uuid4().hex[:8]}"
    project = write_project(run / "project", url, topic, "1s")
    stop = run / "stop"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", "stream", str(project), str(run / "lake"), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lake = LocalLake(run / "lake")
    total = int(rate * seconds)
    latencies: list[float] = []
    seen: set[str] = set()
    done = threading.Event()

    def poll() -> None:
        while not done.is_set() or len(latencies) < total:
            now = time.time()
            try:
                files = lake.parquet_files("raw/events") if lake.exists("raw/events") else []
            except Exception:  # the manifest is being replaced: look again
                files = []
            for name in files:
                if name not in seen:
                    seen.add(name)
                    produced = pq.read_table(name, columns=["produced_ms"]).column("produced_ms").to_numpy()
                    latencies.extend((now * 1000 - produced).tolist())
            if done.is_set() and time.time() > deadline:
                return
            time.sleep(0.02)

    deadline = float("inf")
    poller = threading.Thread(target=poll, daemon=True)
    try:
        time.sleep(3)  # the child starts and assigns its partitions (start: earliest, so nothing is missed)
        poller.start()
        producer = Producer({"bootstrap.servers": servers, "linger.ms": 5})
        tick = 0.01
        per_tick = max(1, int(rate * tick))
        started = time.monotonic()
        sent = 0
        while sent < total:
            target = started + sent / rate
            pause = target - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            now_ms = int(time.time() * 1000)
            for i in range(sent, min(total, sent + per_tick)):
                producer.produce(topic, value(i, now_ms), partition=i % PARTITIONS)
            sent = min(total, sent + per_tick)
            producer.poll(0)
        producer.flush(30)
        achieved = total / (time.monotonic() - started)
        deadline = time.time() + 30
        done.set()
        poller.join(40)
    finally:
        stop.touch()
        _, err = child.communicate(timeout=120)
        admin.delete_topics([topic])
    if len(latencies) < total:
        raise SystemExit(f"only {len(latencies):,} of {total:,} records became visible in the lake:\n{err[-2000:]}")
    ordered = sorted(latencies)
    result = {
        "rate": rate,
        "achieved_rate": achieved,
        "records": total,
        "p50_ms": ordered[len(ordered) // 2],
        "p99_ms": ordered[int(len(ordered) * 0.99)],
        "max_ms": ordered[-1],
        "mean_ms": statistics.fmean(ordered),
    }
    print(
        f"latency produce -> visible in the lake at {achieved:,.0f} records/s (1 s trigger), {total:,} records: "
        f"p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, max {result['max_ms']:.0f} ms "
        f"(aim p99 <= 2,000 ms: {'met' if result['p99_ms'] <= 2000 else 'missed'})"
    )
    shutil.rmtree(run, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000_000, help="records in the backlog topic (default 10,000,000)")
    parser.add_argument("--rate", type=int, default=10_000, help="records/s produced in the latency test")
    parser.add_argument("--seconds", type=float, default=30, help="seconds of producing in the latency test")
    parser.add_argument("--only", choices=["throughput", "latency"], help="run one part")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "sluice":
            result = child_sluice(rest[0], rest[1], int(rest[2]))
        elif kind == "spark":
            result = child_spark(rest[0], rest[1], rest[2], int(rest[3]))
        else:
            result = child_stream(rest[0], rest[1], rest[2])
        print(json.dumps(result))
        return
    sys.path.insert(0, str(REPO / "src"))
    from sluice.urls import kafka_servers

    subprocess.run([str(REPO / "scripts" / "spark-kafka.sh")], check=True, stdout=subprocess.DEVNULL)
    url = kafka_url()
    servers = kafka_servers(url)
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start")
    results: dict[str, Any] = {}
    if args.only in (None, "throughput"):
        results["throughput"] = throughput(url, servers, args.records)
    if args.only in (None, "latency"):
        results["latency"] = latency(url, servers, args.rate, args.seconds)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
