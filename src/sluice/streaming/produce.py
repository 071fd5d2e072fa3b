"""Writing fake events to a Kafka topic at a steady rate (``sluice produce faker``): the pacing and the produce loop.

Pacing is a token bucket (:class:`sluice.pacing.TokenBucket`, the one the REST source's rate limit uses): records are
sent in small chunks, each taking as many tokens as it has records; tokens come back at ``rate`` per second up to a
burst of a tenth of a second's worth (:func:`make_pacer`), and a chunk that finds too few waits for them. So the
rate holds over any stretch longer than a chunk without a sleep per record, and a producer that fell behind (a slow
broker) does not catch up in one burst.

>>> parse_rate("1000/s"), chunk_size(1000.0)
(1000.0, 20)
"""

from __future__ import annotations

import bisect
import functools
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sluice.errors import TransientError
from sluice.pacing import TokenBucket
from sluice.streaming.faker_events import BLOCK, DEFAULT_START, EventBlock, event_block

PROGRESS_EVERY_S = 5.0
"""Seconds between two progress reports of :func:`produce_events`."""
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*s)?\s*$")


def parse_rate(text: str) -> float:
    """Records per second from ``1000/s``, ``1000`` or ``0`` (0: as fast as possible). Raises ValueError."""
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"rate {text!r} is not a number of records per second such as 1000/s (0: as fast as possible)")
    return float(match.group(1))


@dataclass(frozen=True, slots=True)
class Produced:
    """What :func:`produce_events` wrote: records (malformed included), malformed ones, and seconds taken."""

    records: int
    malformed: int
    seconds: float


def next_id(bootstrap: str, topic: str) -> int:
    """The first id of a run writing to ``topic``: one past the number of records ever written to it (the sum of its
    partitions' end offsets; 1 for a new or empty topic), so that a run after another into the same topic repeats no
    id. A topic just created may have no partition leader yet: asked again meanwhile (``asking_again``). Raises
    TransientError when the broker does not answer."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from sluice.bus.kafka_common import REQUEST_TIMEOUT_S, asking_again, quiet

    consumer = Consumer(quiet(bootstrap, {"bootstrap.servers": bootstrap, "group.id": "sluice.produce.next-id"}))

    def end(partition: int) -> int:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=REQUEST_TIMEOUT_S)[1])

    try:
        info = consumer.list_topics(topic, timeout=REQUEST_TIMEOUT_S).topics.get(topic)
        partitions = sorted(info.partitions) if info is not None and info.error is None else []
        ends = [asking_again(functools.partial(end, p)) for p in partitions]
    except KafkaException as exc:
        raise TransientError(f"cannot read the end offsets of {topic!r} at {bootstrap}: {exc.args[0].str()}") from None
    finally:
        consumer.close()
    return sum(max(end, 0) for end in ends) + 1


def make_pacer(rate: float) -> TokenBucket:
    """The token bucket of a producer sending ``rate`` records per second: bursts of a tenth of a second's worth."""
    return TokenBucket(rate, burst=max(rate / 10, 1.0))


def chunk_size(rate: float) -> int:
    """Records sent between two looks at the clock: about 50 chunks per second, 1 to 10,000 records each."""
    return 10_000 if rate <= 0 else int(min(10_000, max(1, rate / 50)))


def produce_events(
    bootstrap: str,
    topic: str,
    schema: str,
    *,
    rate: float,
    count: int | None = None,
    seed: int = 42,
    malformed: float = 0.0,
    start: datetime = DEFAULT_START,
    stop: threading.Event | None = None,
    progress: Callable[[int, float], None] | None = None,
    bucket: TokenBucket | None = None,
    first_id: int = 1,
) -> Produced:
    """Write ``count`` records (None: until ``stop`` is set) of ``schema`` to ``topic`` at ``bootstrap``
    (``host:port[,...]``), ``rate`` records per second (0: as fast as possible), and wait until the broker has them.

    Ids count from ``first_id`` (:func:`next_id`: past what the topic holds, so that runs never repeat an id).
    ``progress(records, seconds)`` is called every :data:`PROGRESS_EVERY_S` seconds; ``bucket`` replaces the pacing
    (tests inject one on a fake clock). Raises TransientError when the broker refused or timed out records (the
    first error named).
    """
    from confluent_kafka import Producer

    failures: list[str] = []
    producer = Producer(producer_config(bootstrap, failures))
    clock = time.monotonic
    began = last_report = clock()
    pacer = bucket or (make_pacer(rate) if rate > 0 else None)
    step = chunk_size(rate)
    spacing_ms = 1000.0 / rate if rate > 0 else 1.0
    sent = bad = 0
    with ThreadPoolExecutor(1, thread_name_prefix="sluice-faker") as maker:
        # The next block is made while this one is sent: Arrow's kernels run without the GIL.
        make = functools.partial(
            event_block, schema, seed, malformed=malformed, start=start, spacing_ms=spacing_ms, first_id=first_id
        )
        blocks = block_sizes(count)
        upcoming = _submit(maker, make, blocks)
        while upcoming is not None and not (stop is not None and stop.is_set()):
            events = upcoming.result()
            upcoming = _submit(maker, make, blocks)
            size = len(events.values)
            for at in range(0, size, step):
                if stop is not None and stop.is_set():
                    break
                keys, values = events.keys[at : at + step], events.values[at : at + step]
                if pacer is not None:
                    pacer.acquire(len(values))
                _send(producer, topic, keys, values)
                sent += len(values)
                bad += bisect.bisect_left(events.malformed_at, at + step) - bisect.bisect_left(events.malformed_at, at)
                if progress is not None and clock() - last_report >= PROGRESS_EVERY_S:
                    last_report = clock()
                    progress(sent, last_report - began)
    left = producer.flush(60.0)
    if failures or left:
        what = failures[0] if failures else f"{left} records not acknowledged after 60 s"
        raise TransientError(f"Kafka did not take every record for {topic!r}: {what}")
    return Produced(sent, bad, clock() - began)


def block_sizes(count: int | None) -> Iterator[tuple[int, int]]:
    """``(block number, records)`` of each block of ``count`` records (None: without end)."""
    block = 0
    while count is None or block * BLOCK < count:
        yield block, BLOCK if count is None else min(BLOCK, count - block * BLOCK)
        block += 1


def _submit(
    maker: ThreadPoolExecutor, make: Callable[..., EventBlock], blocks: Iterator[tuple[int, int]]
) -> Future[EventBlock] | None:
    following = next(blocks, None)
    return maker.submit(make, *following) if following is not None else None


def _send(producer: Any, topic: str, keys: list[bytes], values: list[bytes]) -> None:
    produce = producer.produce
    for key, value in zip(keys, values, strict=True):
        while True:
            try:
                produce(topic, value, key)
                break
            except BufferError:  # librdkafka's queue is full: serve delivery reports until there is room
                producer.poll(0.05)
    producer.poll(0)


def producer_config(bootstrap: str, failures: list[str]) -> dict[str, Any]:
    """A throughput-minded idempotent producer: batches of up to 1 MiB, 10 ms linger, errors reported into ``failures``."""

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    from sluice.bus.kafka_common import Reachability

    return {
        **Reachability(bootstrap).config(),  # librdkafka's lines through logging: one per outage every 10 s
        "bootstrap.servers": bootstrap,
        "client.id": "sluice-produce",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 10,
        "batch.size": 1 << 20,
        "queue.buffering.max.messages": 1_000_000,
        "delivery.report.only.error": True,
        "on_delivery": delivered,
    }
