"""The batch Kafka source: a topic's new records, from the consumer group's committed offsets to the high watermark
seen when the read starts, as Arrow batches; offsets committed only once the object's output is durable.

``{type: kafka, connection: events, topic: orders, format: json, schema: {id: int64}, columns: [_offset]}``

Exactly once in effect (the idea of Kafka Connect's sink connectors and Spark's batch Kafka reads with explicit
offsets): the source reads the range ``[committed, high watermark)`` of each partition, the executor writes the
object's output (the previous lake output plus these records: :meth:`KafkaSource.accumulates`), and only then calls
:meth:`KafkaSource.commit`, which commits the end of each range for the consumer group. A crash or a failed write
before that leaves the group's offsets and the lake output where they were, so the next run reads the same range
again (plus what arrived since) and adds it to the output the failed run did not replace: each record is in the
output once.

The source assigns itself the partitions (no group membership, no rebalance wait), so two runs of the same object
at the same time would both read the range; the runtime runs an object once at a time. Records that cannot be
decoded go to the dead-letter topic (:mod:`sluice.streaming.dead_letters`) before the batch they were part of is
handed on, and count in ``sluice_kafka_dead_letters_total{object,topic}``.

``sluice state reset`` forgets where the object is (:meth:`Source.reread` names the command): it deletes the consumer
group (:mod:`sluice.connectors.kafka_groups`, which says why a deletion and not offsets moved to the earliest) and
then the inferred schema kept with the object's cursor, so the next run reads from ``start`` and replaces the lake
output, as the object's first run did. A group with active members is refused, and a run of the object in progress
must end first: the source does not join the group, so its commit at the end would write the offsets again.

Without a declared ``schema``, the schema is inferred from the first batch (widening the one saved by the previous
run, kept with the object's cursor) and then fixed for the rest of the read (:meth:`Decoder.freeze`): a field that
appears later in the same read is left out, a value that does not fit is dead-lettered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from sluice.connectors.base import Source
from sluice.connectors.batching import stream
from sluice.connectors.plugins import KafkaSourceOptions
from sluice.errors import ConfigError, TerminalError, TransientError, did_you_mean
from sluice.observability import metrics
from sluice.streaming.dead_letters import DeadLetterProducer, refuse, send_dead_letters
from sluice.streaming.records import Decoder, KafkaMessage
from sluice.urls import connection_scheme, kafka_servers

log = logging.getLogger("sluice.connectors.kafka")

REQUEST_TIMEOUT_S = 10.0
"""How long a metadata, offsets or commit request may take, in seconds."""
STALL_TIMEOUT_S = 60.0
"""A read that gets no record for this long while records remain below the high watermark fails (transient)."""
POLL_S = 0.5


class KafkaSource(Source[KafkaSourceOptions]):
    """Reads ``topic`` from the group's committed offsets up to the high watermarks seen at the start (see the module)."""

    def bootstrap(self) -> str:
        """The connection's ``bootstrap.servers``. Raises TerminalError for an unknown or non-``kafka://`` connection."""
        name = self.options.connection
        spec = self.context.connections.get(name)
        if spec is None:
            known = ", ".join(sorted(self.context.connections)) or "none defined"
            hint = did_you_mean(name, self.context.connections)
            raise TerminalError(f"{self.context.label}: unknown connection {name!r}.{hint} Known: {known}")
        if connection_scheme(spec.url) != "kafka":
            raise TerminalError(f"{self.context.label}: connection {name!r} is not a kafka://host:port URL")
        try:
            return kafka_servers(spec.url)
        except ConfigError as exc:
            raise TerminalError(f"{self.context.label}: connection {name!r}: {exc.message}") from None

    def group(self) -> str:
        """The consumer group: the ``group`` option, else ``sluice.<project>.<object id>`` (``sluice.<topic>`` outside
        a project run)."""
        if self.options.group:
            return self.options.group
        if self.context.project and self.context.object_id:
            return f"sluice.{self.context.project}.{self.context.object_id}"
        return f"sluice.{self.options.topic}"

    resumed = False
    """True once :meth:`read` found offsets the group committed in an earlier run (it reads only what came since)."""

    def incremental(self) -> bool:
        """True: each run reads on from the group's committed offsets."""
        return True

    type_setting = "schema"

    def accumulates(self) -> bool:
        """After :meth:`read`: True when it read on from the group's committed offsets, so the object's lake output is
        the previous one plus these records (:mod:`sluice.runtime.accumulate`: appended, or merged on the destination's
        key); a group's first read replaces it."""
        return self.resumed

    def read(self) -> pa.RecordBatchReader:
        from confluent_kafka import Consumer

        from sluice.bus.kafka_common import FETCH_QUEUE_BACKOFF_MS, quiet

        self._ends: dict[int, int] = {}
        config = {
            "bootstrap.servers": self.bootstrap(),
            "group.id": self.group(),
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "allow.auto.create.topics": False,
            "auto.offset.reset": self.options.start,
            "client.id": "sluice-kafka-source",
            "max.partition.fetch.bytes": 8 << 20,  # larger fetches than librdkafka's 1 MiB: about 10 % more records/s here
            "fetch.max.bytes": 64 << 20,
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        }
        self._dead_letters_counter()  # the series exists (at zero) from the first read on
        consumer = Consumer(quiet(self.bootstrap(), config))
        try:
            ranges = self._ranges(consumer)
            decoder = Decoder(self.options, known=self._saved_schema())
            batches = self._batches(self._chunks(consumer, ranges) if ranges else iter(()), decoder)
            first = next(batches, None)
        except BaseException:
            consumer.close()
            raise
        decoder.freeze()
        schema = decoder.schema
        self._schema = decoder.value_schema

        def all_batches() -> Iterator[pa.RecordBatch]:
            if first is not None:
                yield first.cast(schema) if first.schema != schema else first
                yield from batches

        return stream(schema, all_batches(), on_error=_translated, on_close=consumer.close)

    def _ranges(self, consumer: Any) -> dict[int, tuple[int, int]]:
        """``{partition: (first offset, end offset)}`` of what this read covers (partitions with nothing new left out)."""
        from confluent_kafka import KafkaException, TopicPartition

        topic = self.options.topic
        try:
            metadata = consumer.list_topics(topic, timeout=REQUEST_TIMEOUT_S)
        except KafkaException as exc:
            raise TransientError(f"{self.context.label}: cannot reach Kafka at {self.bootstrap()}: {exc}") from None
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise TerminalError(
                f"{self.context.label}: topic {topic!r} does not exist at {self.bootstrap()}; create it or fix 'topic'"
            )
        partitions = sorted(found.partitions)
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=REQUEST_TIMEOUT_S)
        self.resumed = any(tp.offset >= 0 for tp in committed)
        ranges: dict[int, tuple[int, int]] = {}
        for tp in committed:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=REQUEST_TIMEOUT_S)
            if tp.offset >= 0:
                start = tp.offset
                if start < low:
                    log.warning(
                        "%s: partition %s of %s lost offsets %s..%s to retention",
                        self.context.label,
                        tp.partition,
                        topic,
                        start,
                        low - 1,
                    )
                    start = low
            else:
                start = low if self.options.start == "earliest" else high
            if tp.offset < 0 or start < high:  # a group without offsets keeps where it starts from (start: latest)
                self._ends[tp.partition] = high
            if start < high:
                ranges[tp.partition] = (start, high)
        log.info("%s: reading %s partitions %s of %s (group %s)", self.context.label, len(ranges), ranges, topic, self.group())
        return ranges

    def _chunks(self, consumer: Any, ranges: dict[int, tuple[int, int]]) -> Iterator[list[KafkaMessage]]:
        """The records of ``ranges`` in lists of ``batch_size`` (the last one shorter), partitions paused at their end."""
        from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

        topic, size = self.options.topic, self.options.batch_size
        consumer.assign([TopicPartition(topic, p, start) for p, (start, _) in ranges.items()])
        ends = {p: end for p, (_, end) in ranges.items()}
        assigned = [TopicPartition(topic, p) for p in ends]
        seen = {p: start for p, (start, _) in ranges.items()}  # each partition's position after the last consume
        left = set(ends)
        stalled_since = time.monotonic()
        pending: list[KafkaMessage] = []
        while left:
            messages = consumer.consume(num_messages=min(size, 100_000), timeout=POLL_S)
            errors = [error for error in map(Message.error, messages) if error is not None]
            for error in errors:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
            positions = {tp.partition: tp.offset for tp in consumer.position(assigned)}
            # Partitions that delivered records past their end this time (the end is the high watermark seen at
            # the start): only then is each record's offset looked at.
            past = {p for p, position in positions.items() if position > ends[p] and position != seen[p]}
            seen = positions
            if past or errors:
                messages = [
                    m for m in messages if m.error() is None and (m.partition() not in past or m.offset() < ends[m.partition()])
                ]
            pending.extend(messages)
            done = [p for p in left if positions[p] >= ends[p]]
            if done:  # fetch no further than the end
                consumer.pause([TopicPartition(topic, p) for p in done])
                left -= set(done)
            if messages:
                stalled_since = time.monotonic()
            elif time.monotonic() - stalled_since > STALL_TIMEOUT_S:
                raise TransientError(
                    f"{self.context.label}: no record from {topic!r} for {STALL_TIMEOUT_S:g} s below its high watermark"
                )
            while len(pending) >= size or (pending and not left):
                chunk, pending = pending[:size], pending[size:]
                yield chunk

    def _batches(self, chunks: Iterator[list[KafkaMessage]], decoder: Decoder) -> Iterator[pa.RecordBatch]:
        """Each chunk decoded; its undecodable records sent to the dead-letter topic before its batch is yielded."""
        topic = self.options.topic
        dead_letter_topic = self.options.dead_letter_topic(topic)
        dead = DeadLetterProducer(self.bootstrap())  # its producer is made at the first dead letter
        counter = self._dead_letters_counter()
        for chunk in chunks:
            decoded = decoder.decode(chunk)
            if decoded.rejected:
                if dead_letter_topic is None:
                    raise refuse(chunk, decoded.rejected, self.context.label)
                send_dead_letters(dead.producer(), dead_letter_topic, chunk, decoded.rejected, self.context.label)
                counter.inc(len(decoded.rejected))
            if decoded.batch.num_rows:
                yield decoded.batch

    def _dead_letters_counter(self) -> Any:
        name = str(self.context.object_id) if self.context.object_id else self.context.label
        return metrics.child(metrics.KAFKA_DEAD_LETTERS, name, self.options.topic)

    def commit(self) -> None:
        """Commit the end offset of each partition read for the consumer group (the output is durable now), and the
        inferred schema with the object's cursor."""
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        ends = getattr(self, "_ends", {})
        if ends:
            from sluice.bus.kafka_common import quiet

            config = {"bootstrap.servers": self.bootstrap(), "group.id": self.group(), "enable.auto.commit": False}
            consumer = Consumer(quiet(self.bootstrap(), config))
            try:
                offsets = [TopicPartition(self.options.topic, p, end) for p, end in sorted(ends.items())]
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                raise TransientError(f"{self.context.label}: could not commit offsets of {self.options.topic!r}: {exc}") from None
            finally:
                consumer.close()
        schema = getattr(self, "_schema", None)
        if self.options.schema is None and schema is not None and self.context.cursor is not None:
            self.context.cursor.save({"schema": schema.serialize().to_pybytes().hex()})

    def _saved_schema(self) -> pa.Schema | None:
        """The inferred schema the last successful run committed, if any."""
        saved = self.context.cursor.load() if self.context.cursor is not None and self.options.schema is None else None
        if not isinstance(saved, dict) or not isinstance(saved.get("schema"), str):
            return None
        return pa.ipc.read_schema(pa.py_buffer(bytes.fromhex(saved["schema"])))


def _translated(exc: Exception) -> Exception | None:
    """librdkafka errors while reading are transient (a broker away, a leader moving): the object is retried."""
    from confluent_kafka import KafkaException

    return TransientError(f"Kafka read failed: {exc}") if isinstance(exc, KafkaException) else None
