"""Dead letters of a user's topic: the records :class:`~sluice.streaming.records.Decoder` rejected, written as they
were to a dead-letter topic (default ``<topic>.dead-letter``) with the reason and where they came from in headers.

The value and key are the original bytes, the original headers are kept, and four headers are added, named after
Kafka Connect's dead-letter queue context headers (``__connect.errors.topic``...,
``errors.deadletterqueue.context.headers.enable``):

=========================  ===========================================
``sluice.errors.reason``   why the record was rejected (UTF-8, at most 1,000 characters)
``sluice.errors.topic``    the topic it was read from
``sluice.errors.partition``  its partition (decimal text)
``sluice.errors.offset``   its offset (decimal text)
``sluice.errors.object``   the object that rejected it (``object 1001 (orders)``), when sent by :func:`send_dead_letters`
``sluice.errors.stream``   which stream sent it: project, object and lake output
                           (``project shop, object 1001 (orders), lake /srv/lake/raw/orders``), from a streaming object
=========================  ===========================================

Objects reading one topic share its dead-letter topic (those of several projects too): the object and stream
headers tell whose dead letter it is. The topic, partition, offset and stream headers are a dead letter's identity:
a streaming object reads back on start those it sent for records whose micro-batch the lake has not committed and
does not send them again (:mod:`sluice.streaming.sent_letters`).

Sluice does not create a dead-letter topic: its producer asks the broker for it, which creates it at the first dead
letter when its ``auto.create.topics.enable`` is true. Otherwise that dead letter fails the reader, terminal, in one
line saying so (:func:`missing_topic`); ``sluice validate --live`` reports it before a run
(:mod:`sluice.connectors.kafka_live`).

Sluice's own bus has its own dead letters (:mod:`sluice.bus.dead_letter`, a JSON envelope on
``sluice.dead-letters``); these are for users' topics, where tools that read a dead-letter queue expect the record
itself.

>>> from sluice.streaming.records import Record, Rejected
>>> [(key, value, headers)] = dead_letters([Record(b"{oops", b"k", "orders", 2, 41)], [Rejected(0, "not valid JSON")])
>>> key, value, headers[-1]
(b'k', b'{oops', ('sluice.errors.offset', b'41'))
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from sluice.errors import TerminalError, TransientError
from sluice.streaming.records import KafkaMessage, Rejected

if TYPE_CHECKING:
    import pyarrow as pa

    from sluice.streaming.sent_letters import SentLetters

log = logging.getLogger("sluice.streaming.dead_letters")

REASON, TOPIC, PARTITION, OFFSET, OBJECT, STREAM = (
    "sluice.errors.reason",
    "sluice.errors.topic",
    "sluice.errors.partition",
    "sluice.errors.offset",
    "sluice.errors.object",
    "sluice.errors.stream",
)
FLUSH_TIMEOUT_S = 30.0
"""How long :func:`send_dead_letters` waits for the broker to acknowledge the dead letters, in seconds."""
PROPAGATION_MS = 10_000
"""How long the dead-letter producer waits for a topic its broker does not list, in milliseconds (librdkafka's
``topic.metadata.propagation.max.ms``, 30,000 by default: as long as :data:`FLUSH_TIMEOUT_S`, so the flush gave up
before the delivery said why). A topic the broker creates on first use appears within it; one it does not create
fails the dead letter's delivery with ``UNKNOWN_TOPIC_OR_PART`` after it."""

DeadLetter = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]
"""``(key, value, headers)`` of one dead letter, as ``Producer.produce`` takes them."""


def dead_letters(
    messages: Sequence[KafkaMessage], rejected: Sequence[Rejected], origin: str | None = None, stream: str | None = None
) -> list[DeadLetter]:
    """The ``(key, value, headers)`` of the dead letter of each rejected record (``rejected`` index ``messages``);
    ``origin`` (the rejecting object) goes in the ``sluice.errors.object`` header and ``stream`` (its
    :attr:`SentLetters.stream <sluice.streaming.sent_letters.SentLetters.stream>`) in ``sluice.errors.stream``, when
    given."""
    letters: list[DeadLetter] = []
    for reject in rejected:
        message = messages[reject.index]
        headers = list(message.headers() or [])
        headers += [
            (REASON, reject.reason.encode("utf-8")),
            (TOPIC, str(message.topic()).encode("utf-8")),
            (PARTITION, str(message.partition()).encode("ascii")),
            (OFFSET, str(message.offset()).encode("ascii")),
        ]
        if origin is not None:
            headers.append((OBJECT, origin.encode("utf-8")))
        if stream is not None:
            headers.append((STREAM, stream.encode("utf-8")))
        letters.append((message.key(), message.value(), headers))
    return letters


def send_dead_letters(
    producer: Any,
    topic: str,
    messages: Sequence[KafkaMessage],
    rejected: Sequence[Rejected],
    where: str,
    acknowledged: Callable[[str, int, int], None] | None = None,
    stream: str | None = None,
) -> None:
    """Write the dead letters of ``rejected`` to ``topic`` with ``producer`` (a ``confluent_kafka.Producer``) and wait
    until the broker has them all, so the caller may then commit the offsets of the originals.

    ``where`` names the reader in the log lines (``object 1001 (orders)``); ``acknowledged(topic, partition,
    offset)`` is told where each dead letter landed; ``stream`` goes in the ``sluice.errors.stream`` header. One
    warning line per call: the count and the first record's place and reason. Raises TransientError when a dead
    letter was not delivered within :data:`FLUSH_TIMEOUT_S` (the read is retried and reads the originals again, so a
    dead letter may be written twice, never lost, unless the caller leaves out those it already sent:
    :class:`~sluice.streaming.sent_letters.SentLetters`), TerminalError (:func:`missing_topic`) when ``topic`` does
    not exist and the broker does not create it.
    """
    if not rejected:
        return
    first = messages[rejected[0].index]
    log.warning(
        "%s: %d records dead-lettered to %s; the first, at partition %s offset %s of %s: %s",
        where,
        len(rejected),
        topic,
        first.partition(),
        first.offset(),
        first.topic(),
        rejected[0].reason,
    )
    _send(producer, topic, dead_letters(messages, rejected, where, stream), where, acknowledged)


def _send(
    producer: Any,
    topic: str,
    letters: Iterable[DeadLetter],
    where: str,
    acknowledged: Callable[[str, int, int], None] | None = None,
) -> None:
    """Produce ``letters`` to ``topic`` and wait for the broker (:func:`send_dead_letters`); raises what
    :func:`check_delivered` raises, and TerminalError (:func:`missing_topic`) when the producer already knows that
    ``topic`` does not exist (``produce`` refuses the letter: ``_UNKNOWN_TOPIC``)."""
    from confluent_kafka import KafkaError, KafkaException

    failures: list[Any] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failures.append(error)
        elif acknowledged is not None:
            acknowledged(message.topic(), message.partition(), message.offset())

    for key, value, headers in letters:
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers, on_delivery=delivered)
                break
            except BufferError:  # the producer's queue is full: let it drain
                producer.poll(0.1)
            except KafkaException as exc:  # a topic its last dead letter found missing
                if exc.args[0].code() == KafkaError._UNKNOWN_TOPIC:
                    raise missing_topic(where, topic) from None
                raise
    check_delivered(where, topic, failures, producer.flush(FLUSH_TIMEOUT_S))


def check_delivered(where: str, topic: str, failures: Sequence[Any], left: int) -> None:
    """Raise for dead letters to ``topic`` that the broker did not take: ``failures`` are the delivery callback's
    errors (``confluent_kafka.KafkaError``), ``left`` the count ``flush`` returned. ``where`` names the reader.

    Raises TerminalError (:func:`missing_topic`) when the topic does not exist (``UNKNOWN_TOPIC_OR_PART``: the broker
    does not create topics), else TransientError (not acknowledged in time, any other delivery error)."""
    from confluent_kafka import KafkaError

    if not left and not failures:
        return
    if any(error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC) for error in failures):
        raise missing_topic(where, topic)
    what = str(failures[0]) if failures else f"{left} not acknowledged after {FLUSH_TIMEOUT_S:g} s"
    raise TransientError(f"{where}: could not write dead letters to {topic!r}: {what}")


def missing_topic(where: str, topic: str) -> TerminalError:
    """The error for dead letters to a ``topic`` that does not exist on a broker that does not create topics (its
    ``auto.create.topics.enable`` is false): terminal, since sending them again cannot help. ``where`` names the
    reader (``object 1001 (orders)``)."""
    return TerminalError(
        f"{where}: the dead-letter topic {topic!r} does not exist and the broker does not create topics "
        "(auto.create.topics.enable=false); create it, or set dead_letter to an existing topic, or to false to fail "
        "the read on records that cannot be decoded"
    )


def set_aside(
    producer: Callable[[], Any],
    target_of: Callable[[str], str | None],
    messages: Sequence[KafkaMessage],
    rejected: Sequence[Rejected],
    where: str,
    sent: SentLetters | None = None,
) -> dict[str, int]:
    """Send each rejected record to the dead-letter topic of the topic it was read from (``target_of(topic)``,
    :meth:`RecordSettings.dead_letter_topic <sluice.streaming.options.RecordSettings.dead_letter_topic>`) with
    :func:`send_dead_letters`, and wait for the acknowledgements. ``producer()`` gives the producer (made on first
    use); ``sent`` (a stream's :class:`~sluice.streaming.sent_letters.SentLetters`) leaves out the records whose
    dead letter was sent before a restart and is told where the new ones landed. Returns the number of dead
    letters per source topic (those sent before a restart included), for the caller's counters.

    Raises TerminalError (:func:`refuse`) when a topic's records may not be dead-lettered (``dead_letter: false``) or
    (:func:`missing_topic`) when their dead-letter topic does not exist and the broker does not create it,
    TransientError when the broker did not acknowledge them. Used by the micro-batcher and the Spark engine alike.
    """
    by_topic: dict[str, list[Rejected]] = {}
    for item in rejected:
        by_topic.setdefault(str(messages[item.index].topic()), []).append(item)
    for topic, items in by_topic.items():
        target = target_of(topic)
        if target is None:
            raise refuse(messages, items, where)
        fresh = items if sent is None else sent.unsent(messages, items)
        if len(fresh) < len(items):
            log.info("%s: %d dead letters of %s were sent before a restart", where, len(items) - len(fresh), topic)
        if sent is None:
            send_dead_letters(producer(), target, messages, fresh, where)
        else:
            send_dead_letters(producer(), target, messages, fresh, where, sent.delivered, sent.stream)
    return {topic: len(items) for topic, items in by_topic.items()}


class DeadLetterProducer:
    """The producer of one stream's (or batch Kafka read's) dead letters, made on first use (idempotent, ``acks=all``,
    :data:`PROPAGATION_MS`)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._producer: Any = None

    def producer(self) -> Any:
        """The ``confluent_kafka.Producer`` (made at the first call)."""
        if self._producer is None:
            from confluent_kafka import Producer

            from sluice.bus.kafka_common import quiet

            config = {
                "bootstrap.servers": self.bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "topic.metadata.propagation.max.ms": PROPAGATION_MS,
            }
            self._producer = Producer(quiet(self.bootstrap, config))
        return self._producer

    def send_rows(self, topic: str, rows: pa.Table, reason: str, source_topic: str, origin: str) -> None:
        """Rows that are no longer Kafka records (decoded, then without an event time for a window), as JSON objects
        (re-encoded: not the original bytes, no key) with the reason, source topic and object headers; waits for
        the acknowledgement. Raises what :func:`check_delivered` raises (TerminalError when ``topic`` does not exist,
        TransientError when the broker did not take them)."""
        producer = self.producer()
        headers: list[tuple[str, bytes | None]] = [
            (REASON, reason.encode()),
            (TOPIC, source_topic.encode()),
            (OBJECT, origin.encode()),
        ]
        letters: list[DeadLetter] = [
            (None, msgspec.json.encode(row, enc_hook=str), headers)
            for row in rows.to_pylist()  # rare: a record without an event time
        ]
        _send(producer, topic, letters, origin)


def refuse(messages: Sequence[KafkaMessage], rejected: Sequence[Rejected], where: str) -> TerminalError:
    """The error for records rejected while ``dead_letter: false``: it names the first one and the reason."""
    first = messages[rejected[0].index]
    more = f" (and {len(rejected) - 1} more)" if len(rejected) > 1 else ""
    return TerminalError(
        f"{where}: the record at partition {first.partition()} offset {first.offset()} of {first.topic()!r} cannot be "
        f"decoded{more}: {rejected[0].reason}; fix the producer, or set dead_letter: true to set such records aside"
    )
