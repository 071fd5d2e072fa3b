"""Kafka records to Arrow, and fake events to Kafka (issue 13's hot paths), against plain ways of doing the same.

Decode: 1,000,000 transactions of ``sluice produce faker`` (about 200 bytes of JSON each, made in memory, no broker)
wrapped as Kafka messages (``sluice.streaming.records.Record``), decoded in batches of ``--batch`` records into Arrow
record batches with ``_partition`` and ``_offset`` columns:

- Sluice's ``Decoder`` with an inferred schema and with a declared one (pyarrow.json over the joined values);
- peers, same messages, same batches: ``json.loads`` per record then ``pa.Table.from_pylist``; ``msgspec.json.decode``
  per record then ``from_pylist`` (the usual hand-written consumer loop), each with the same metadata columns.

Produce (``--broker``, needs the test broker, ``scripts/servers/kafka.sh``): ``--count`` transactions written with
``produce_events`` at rate 0 (records made and sent), against a plain confluent-kafka loop sending the same records
made beforehand with the same producer settings (the producer's floor: only the ``produce`` calls), to topics made
for the run and deleted afterwards.

    python bench/kafka_records.py                 # decode only
    python bench/kafka_records.py --broker        # and the producer, on kafka://127.0.0.1:29092
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import msgspec
import pyarrow as pa

from sluice.streaming.faker_events import BLOCK, event_block
from sluice.streaming.records import Decoder, Record, RecordSettings

DECLARED = {
    "transaction_id": "int64",
    "user_id": "int64",
    "product_id": "int64",
    "amount": "float64",
    "currency": "string",
    "ts": "string",
    "status": "string",
    "channel": "string",
    "country": "string",
}


def messages(count: int) -> list[Record]:
    values: list[bytes] = []
    for block in range((count + BLOCK - 1) // BLOCK):
        values += event_block("transactions", 1, block, min(BLOCK, count - block * BLOCK)).values
    return [Record(value, key_=b"k", partition_=i % 3, offset_=i // 3) for i, value in enumerate(values)]


def with_metadata(rows: list[Any], batch: Sequence[Record]) -> pa.Table:
    table = pa.Table.from_pylist(rows)
    table = table.append_column("_partition", pa.array([m.partition() for m in batch], pa.int32()))
    return table.append_column("_offset", pa.array([m.offset() for m in batch], pa.int64()))


def per_record(loads: Callable[[bytes], object]) -> Callable[[Sequence[Record]], int]:
    def decode(batch: Sequence[Record]) -> int:
        rows: list[Any] = [loads(m.value() or b"") for m in batch]
        return int(with_metadata(rows, batch).num_rows)

    return decode


def sluice(settings: RecordSettings) -> Callable[[Sequence[Record]], int]:
    decoder = Decoder(settings)
    return lambda batch: decoder.decode(batch).batch.num_rows


def timed(decode: Callable[[Sequence[Record]], int], msgs: list[Record], batch: int) -> float:
    start, rows = time.perf_counter(), 0
    for at in range(0, len(msgs), batch):
        rows += decode(msgs[at : at + batch])
    assert rows == len(msgs), (rows, len(msgs))
    return len(msgs) / (time.perf_counter() - start)


RESULTS: dict[str, float] = {}


def bench_decode(count: int, batch: int, rounds: int) -> None:
    msgs = messages(count)
    size = sum(len(m.value() or b"") for m in msgs) / len(msgs)
    print(f"decode: {count:,} records of {size:.0f} bytes on average, batches of {batch:,}, {rounds} rounds (best)")
    columns = ["_partition", "_offset"]
    contenders: dict[str, Callable[[], Callable[[Sequence[Record]], int]]] = {
        "sluice (inferred)": lambda: sluice(RecordSettings(columns=columns)),  # type: ignore[arg-type]
        "sluice (declared)": lambda: sluice(RecordSettings(schema=DECLARED, columns=columns)),  # type: ignore[arg-type]
        "json.loads + from_pylist": lambda: per_record(json.loads),
        "msgspec + from_pylist": lambda: per_record(msgspec.json.decode),
    }
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, make in contenders.items():
            best[name] = max(best.get(name, 0.0), timed(make(), msgs, batch))
    peer = best["msgspec + from_pylist"]
    for name, rate in best.items():
        RESULTS[f"decode {name} records/s"] = rate
        print(f"  {name:26} {rate:12,.0f} records/s  {rate / peer:5.2f}x msgspec + from_pylist")


def bench_produce(bootstrap: str, count: int) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    from sluice.streaming.produce import produce_events, producer_config

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [f"bench-produce-{uuid.uuid4().hex[:8]}-{n}" for n in range(2)]
    for future in admin.create_topics([NewTopic(t, 3, 1) for t in topics], operation_timeout=10).values():
        future.result(timeout=15)
    try:
        done = produce_events(bootstrap, topics[0], "transactions", rate=0, count=count)
        ours = done.records / done.seconds
        values: list[bytes] = []
        keys: list[bytes] = []
        for block in range((count + BLOCK - 1) // BLOCK):
            made = event_block("transactions", 42, block, min(BLOCK, count - block * BLOCK))
            values += made.values
            keys += made.keys
        failures: list[str] = []
        producer = Producer(producer_config(bootstrap, failures))
        start = time.perf_counter()
        for key, value in zip(keys, values, strict=True):
            while True:
                try:
                    producer.produce(topics[1], value, key)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(60)
        plain = count / (time.perf_counter() - start)
        assert not failures, failures[:1]
        RESULTS.update({"produce sluice records/s": ours, "produce plain loop records/s": plain})
        print(f"produce: {count:,} transactions, rate 0, 3 partitions")
        print(f"  sluice produce_events (made + sent) {ours:12,.0f} records/s  {ours / plain:5.2f}x plain loop")
        print(f"  plain confluent-kafka loop (sent)   {plain:12,.0f} records/s")
    finally:
        for future in admin.delete_topics(topics, operation_timeout=10).values():
            future.result(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="records (default 1,000,000)")
    parser.add_argument("--batch", type=int, default=10_000, help="records per decoded batch (default 10,000)")
    parser.add_argument("--rounds", type=int, default=2, help="decode rounds, best kept (default 2)")
    parser.add_argument("--broker", action="store_true", help="also measure the producer on the test broker")
    parser.add_argument("--bootstrap", default=os.environ.get("SLUICE_TEST_KAFKA_URL", "kafka://127.0.0.1:29092"))
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}, {os.cpu_count()} cores")
    bench_decode(args.count, args.batch, args.rounds)
    if args.broker:
        bench_produce(args.bootstrap.removeprefix("kafka://"), args.count)
    if args.json:
        args.json.write_text(json.dumps({"load_average": os.getloadavg(), **RESULTS}, indent=2))


if __name__ == "__main__":
    main()
