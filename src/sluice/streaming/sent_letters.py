"""Dead letters exactly once in effect: what one streaming object already dead-lettered, read back on start.

A micro-batch's dead letters are sent and acknowledged *before* its lake commit (which holds the source offsets):
a stream killed between the two reads the batch again on restart and would send the same dead letters again.
Kafka cannot take part in the lake's commit from here (a two-phase commit needs a prepared transaction that a new
producer resumes after a crash: Flink's ``TwoPhaseCommitSinkFunction`` does it by reflection on the Java client,
KIP-939 proposes it as an API; librdkafka has neither), so the dead letters are made idempotent instead, Enterprise
Integration Patterns' *Idempotent Receiver* (Hohpe & Woolf) turned on the writer's side:

- **Deterministic identity.** A dead letter says which record it is: the source topic, partition and offset
  headers (Kafka Connect's dead-letter queue context headers, :mod:`sluice.streaming.dead_letters`), and the
  stream that sent it (``sluice.errors.stream``: the project, the object and its lake output, :func:`stream_of`):
  an object of the same id and name in another project, or in a copy of the project writing to another lake,
  reading the same topic into the same dead-letter topic is another stream. At most one per stream and record is
  wanted. Dead letters sent before that header existed (only ``sluice.errors.object``) are taken as this
  stream's when their object label matches and the lake's last commit was written before it existed too (it has
  no :data:`STREAM_KEY`): the first start after an upgrade does not send them again.
- **Marks in the lake's commit.** Each commit records, per dead-letter topic and partition, an offset at or
  before the first dead letter the object may send after it (``dead_letter_offsets`` in the commit record, the
  shape of ``offsets``): the end offsets seen when the stream started, moved past each of its own dead letters as
  the broker acknowledges them (an idempotent producer keeps one partition's records in order).
- **Read back on start.** :meth:`SentLetters.recover` reads each dead-letter topic from the last commit's marks
  (a partition without a mark, from its start) to its end, keeps the identities of this object's dead letters
  whose source offset is at or past the lake's committed offset (sent for a micro-batch the lake never
  committed), and :meth:`SentLetters.unsent` leaves those out when the replayed batch rejects them again.

What is read on start is the dead letters written since the last commit's marks: this object's from the batch the
lake lost, and those of other objects sharing the topic meanwhile. A dead letter this object already sent is not
sent again even when its lake dataset was deleted and the topic is read again from the start. Rows dead-lettered
by a window (no readable event time) have no source offset and stay at least once.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sluice.errors import TerminalError, TransientError
from sluice.streaming.consumer import Offsets, decode_offsets, encode_offsets
from sluice.streaming.dead_letters import OBJECT, OFFSET, PARTITION, STREAM, TOPIC
from sluice.streaming.options import RecordSettings
from sluice.streaming.records import KafkaMessage, Rejected

log = logging.getLogger(__name__)

COMMIT_KEY = "dead_letter_offsets"
"""The lake commit record's key of the marks (per dead-letter topic and partition, as ``offsets``)."""
STREAM_KEY = "dead_letter_stream"
"""The lake commit record's key of the stream's identity (:func:`stream_of`), the ``sluice.errors.stream`` header."""
IDLE_S = 30.0
""":meth:`SentLetters.recover` fails (TransientError) when the broker sends nothing for this many seconds."""
KILL_ENV = "SLUICE_TEST_KILL_AFTER_DEAD_LETTERS"
"""Fault injection for tests (unset in normal runs): ``N`` kills the process with SIGKILL at the N-th micro-batch
whose dead letters were acknowledged, just before its lake commit (:func:`crash_point`)."""

_batches_with_letters = 0


class SentLetters:
    """One streaming object's record of the dead letters it sent (see the module).

    ``origin``: the object's label, as in the ``sluice.errors.object`` header (``object 1001 (orders)``);
    ``stream``: its identity, the ``sluice.errors.stream`` header (:func:`stream_of`).
    """

    def __init__(self, bootstrap: str, origin: str, stream: str) -> None:
        self.bootstrap, self.origin, self.stream = bootstrap, origin, stream
        self.marks: Offsets = {}
        """Per dead-letter topic and partition: no dead letter of this object sent from now on is before it."""
        self._sent: dict[tuple[str, int], set[int]] = {}

    def recover(self, topics: Iterable[str], commit: Mapping[str, Any] | None) -> int:
        """Read dead-letter ``topics`` from the marks of the lake's last ``commit`` record to their end, keep this
        object's dead letters of records at or past the commit's source ``offsets``, and set :attr:`marks` to the
        end offsets. Returns how many were found. A topic that does not exist is empty.

        Raises TransientError when the broker does not answer, TerminalError for a fatal client error."""
        from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

        from sluice.bus.kafka_common import REQUEST_TIMEOUT_S, quiet

        topics = sorted(set(topics))
        if not topics:  # dead_letter: false
            return 0
        marks = decode_offsets((commit or {}).get(COMMIT_KEY))
        committed = decode_offsets((commit or {}).get("offsets"))
        legacy = commit is not None and STREAM_KEY not in commit  # last committed by a version without the header
        config = {
            "bootstrap.servers": self.bootstrap,
            "group.id": "sluice.dead-letter-recovery",  # never joined nor committed: the partitions are assigned
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "allow.auto.create.topics": False,
        }
        consumer = Consumer(quiet(self.bootstrap, config))
        found = 0
        try:
            left: dict[tuple[str, int], int] = {}  # partitions still to read, and their end
            for topic, partition, low, high in _ranges(consumer, topics, REQUEST_TIMEOUT_S):
                self.marks.setdefault(topic, {})[partition] = high
                start = max(low, marks.get(topic, {}).get(partition, low))
                if start > high:  # the topic was deleted and made again since: its offsets started over
                    start = low
                if start < high:
                    left[(topic, partition)] = start
            if not left:
                return 0
            consumer.assign([TopicPartition(t, p, o) for (t, p), o in left.items()])
            heard = time.monotonic()
            while left:
                messages = consumer.consume(1000, 1.0)
                now = time.monotonic()
                if messages:
                    heard = now
                elif now - heard > IDLE_S:
                    raise TransientError(
                        f"{self.origin}: Kafka at {self.bootstrap} sent no dead letter to read back in {IDLE_S:g} s"
                    )
                for message in messages:
                    error, place = message.error(), (str(message.topic()), int(message.partition() or 0))
                    if error is None:
                        found += self._remember(message.headers() or [], committed, legacy)
                        if int(message.offset() or 0) + 1 >= self.marks[place[0]][place[1]]:
                            left.pop(place, None)
                    elif error.code() == KafkaError._PARTITION_EOF:
                        left.pop(place, None)
                    elif error.fatal():
                        raise TerminalError(f"{self.origin}: reading back its dead letters: {error.str()}")
        except KafkaException as exc:
            raise TransientError(f"{self.origin}: could not read back its dead letters at {self.bootstrap}: {exc}") from exc
        finally:
            consumer.close()
        if found:
            log.warning(
                "%s: %d of its dead letters were sent before it stopped, for records of a micro-batch that did not reach "
                "the lake; those records are read again now and their dead letters are not sent twice",
                self.origin,
                found,
            )
        return found

    def _remember(self, headers: Any, committed: Offsets, legacy: bool) -> int:
        """1 when ``headers`` are of this stream's dead letter of a record not committed yet (then kept), else 0.
        ``legacy``: also a dead letter without the stream header whose object label is this object's."""
        values = dict(headers)  # the last of a repeated key wins: Sluice's headers come after the record's own
        stream = values.get(STREAM)
        if stream is None:
            if not legacy or values.get(OBJECT) != self.origin.encode():
                return 0
        elif stream != self.stream.encode():
            return 0
        topic, partition, offset = values.get(TOPIC), values.get(PARTITION), values.get(OFFSET)
        if topic is None or partition is None or offset is None:
            return 0  # a window's row without an event time: no place in the source
        source = (topic.decode(), int(partition))
        if int(offset) < committed.get(source[0], {}).get(source[1], -1):
            return 0
        self._sent.setdefault(source, set()).add(int(offset))
        return 1

    def unsent(self, messages: Sequence[KafkaMessage], rejected: Sequence[Rejected]) -> list[Rejected]:
        """The ``rejected`` records (indexing ``messages``) whose dead letter this object has not sent yet."""
        if not self._sent:
            return list(rejected)
        fresh: list[Rejected] = []
        for item in rejected:
            message = messages[item.index]
            sent = self._sent.get((str(message.topic()), int(message.partition() or 0)))
            offset = int(message.offset() or 0)
            if sent is not None and offset in sent:
                sent.discard(offset)
            else:
                fresh.append(item)
        return fresh

    def delivered(self, topic: str, partition: int, offset: int) -> None:
        """The broker acknowledged a dead letter at ``offset``: later ones are past it."""
        parts = self.marks.setdefault(topic, {})
        parts[partition] = max(parts.get(partition, 0), offset + 1)

    def commit_record(self) -> dict[str, Any]:
        """The lake commit record's fields: :attr:`marks` (under :data:`COMMIT_KEY`) and the stream's identity
        (:data:`STREAM_KEY`)."""
        return {COMMIT_KEY: encode_offsets(self.marks), STREAM_KEY: self.stream}


def stream_of(project: str, origin: str, lake: Any, layer: str, name: str) -> str:
    """A stream's identity (the ``sluice.errors.stream`` header): ``project shop, object 1001 (orders), lake
    /srv/lake/raw/orders``, the object ``origin`` of ``project`` writing ``layer/name`` of ``lake`` (a local lake's
    folder, an S3 lake's ``s3://bucket/prefix``)."""
    root = getattr(lake, "root", None)
    root_of = getattr(lake, "root_of", None)
    if root is not None:
        place = f"{root}/{layer}"
    elif callable(root_of):
        place = f"s3://{root_of(layer)}"
    else:
        place = f"{type(lake).__name__}:{layer}"
    return f"project {project}, {origin}, lake {place}/{name}"


def read_back(
    bootstrap: str,
    origin: str,
    stream: str,
    settings: RecordSettings,
    topics: Iterable[str],
    commit: Mapping[str, Any] | None,
) -> SentLetters:
    """The :class:`SentLetters` of the object ``origin`` (the stream ``stream``, :func:`stream_of`) reading ``topics``
    (``settings``: its dead-letter topic of each), recovered (:meth:`SentLetters.recover`) from the lake's last
    ``commit`` record (None: nothing committed). Raises what :meth:`~SentLetters.recover` raises."""
    sent = SentLetters(bootstrap, origin, stream)
    sent.recover([t for t in map(settings.dead_letter_topic, topics) if t is not None], commit)
    return sent


def _ranges(consumer: Any, topics: Sequence[str], timeout_s: float) -> list[tuple[str, int, int, int]]:
    """``(topic, partition, low, high)`` of every partition of the ``topics`` that exist."""
    from confluent_kafka import TopicPartition

    metadata = consumer.list_topics(timeout=timeout_s)
    ranges = []
    for topic in topics:
        info = metadata.topics.get(topic)
        if info is None or info.error is not None:
            continue
        for partition in sorted(info.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s, cached=False)
            ranges.append((topic, partition, low, high))
    return ranges


def crash_point(dead_letters: int) -> None:
    """Fault injection for the tests (:data:`KILL_ENV`): after a micro-batch's ``dead_letters`` were acknowledged
    and before its lake commit. Does nothing unless the variable is set."""
    global _batches_with_letters
    if not dead_letters or not os.environ.get(KILL_ENV):
        return
    _batches_with_letters += 1
    if _batches_with_letters >= int(os.environ[KILL_ENV]):
        os.kill(os.getpid(), signal.SIGKILL)
