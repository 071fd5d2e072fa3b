"""The micro-batch loop of a streaming object: consume, decode, transform, append to the lake with the offsets.

One loop per object: its thread gathers, a committer thread writes (one micro-batch at a time, in order)::

    offsets = lake.last_commit(...)["offsets"]          # the lake is the source of truth
    consumer.assign(partitions of every topic, at offsets)
    repeat until stopped (or, --available-now, until the high watermarks seen at the start are committed):
        messages = consume() until the trigger fires       # interval_s, records, max_batch_records / _bytes
                   each consume() call's values joined into one buffer at once (sluice.streaming.columns)
        committer: batch = decode(messages)                 # sluice.streaming.records; bad records -> dead letters
                   batch = window(sql(batch))               # streaming.sql (DuckDB, table "batch"), streaming.window
                   lake.append(batch, commit={offsets, batch, ...}, state=window state)   # one atomic commit
        consumer.commit(offsets, asynchronous=True)         # a copy for lag tools only

Exactly once: a micro-batch's rows and the offsets after its last record are committed together
(:meth:`Lake.append`), and a (re)started loop consumes from the committed offsets, so a ``kill -9`` at any
moment neither loses nor repeats a record in the lake. Dead letters are sent and acknowledged before the
commit, and a restart reads back those sent for a micro-batch the lake did not commit and does not send them
again (:mod:`sluice.streaming.sent_letters`): each rejected record is dead-lettered once in effect.

An unreachable lake (the S3 server stopped, a network outage: a TransientError or a connection's OSError) never
stops the loop: the lake call is tried again with exponential backoff (:data:`BACKOFF_FIRST_S` doubling up to
:data:`BACKOFF_CAP_S`) for as long as it takes, the micro-batch and its offsets held as they are, so nothing is lost or
consumed twice. Each attempt carries the micro-batch's idempotency token (its number and the digest of its offsets),
so an append that reached the lake but whose answer was lost is not added again. The outage is logged once when it
begins and once when it ends, and the status says ``lake_unreachable`` meanwhile (``GET /streams``). A stop request
during the outage ends the loop without committing the micro-batch: it is consumed again at the next start.

Back-pressure: the loop gathers at most one micro-batch ahead of the one being written, the consumer's prefetch is
bounded (:mod:`sluice.streaming.consumer`), and a micro-batch holds at most ``max_batch_records`` records and
``max_batch_bytes`` bytes of values. A stop request (SIGTERM, SIGINT, ``stop``) ends the micro-batch being gathered
early and commits it, so nothing consumed is left uncommitted.

Entry point for benchmarks and tests: :func:`run_stream`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pyarrow as pa

from sluice.errors import ConfigError, SluiceError, TerminalError, TransientError
from sluice.lake.base import Lake
from sluice.observability import metrics
from sluice.project.model import ObjectSpec, Project, layer_of
from sluice.streaming.columns import RecordColumns
from sluice.streaming.consumer import Offsets, StreamConsumer, decode_offsets, encode_offsets
from sluice.streaming.dead_letters import DeadLetterProducer, set_aside
from sluice.streaming.options import RecordSettings
from sluice.streaming.records import Decoder, Rejected
from sluice.streaming.sent_letters import SentLetters, crash_point, read_back, stream_of
from sluice.streaming.settings import BATCH_TABLE, CompactSettings, StreamingSettings
from sluice.streaming.status import BatchInfo, StreamStatus
from sluice.streaming.window_options import SOURCE_COLUMN
from sluice.urls import kafka_servers

if TYPE_CHECKING:
    from sluice.streaming.windows import WindowOperator

log = logging.getLogger(__name__)

CONSUME_CHUNK = 20_000
"""Messages asked of one ``consume()`` call."""
IDLE_POLL_S = 0.5
"""Longest wait of one ``consume()`` call, so a stop request is seen within it."""
BACKOFF_FIRST_S = 1.0
"""Seconds before the first new attempt at a lake call that failed because the lake is unreachable; doubled after each."""
BACKOFF_CAP_S = 30.0
"""Longest wait between two attempts at an unreachable lake (seconds); attempts go on for ever (until a stop)."""
_NOT_AN_OUTAGE = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)
"""OSErrors of the local lake that are mistakes, not an unreachable lake: raised at once."""

T = TypeVar("T")


class LakeUnreachable(TransientError):
    """The loop was asked to stop while the lake (or, starting, Kafka) could not be reached: its last micro-batch was
    not committed (its records are consumed again at the next start)."""


Until = Callable[[StreamStatus], bool]
"""Asked after each micro-batch and each idle poll; True ends the loop (benchmarks: ``lambda s: s.records >= n``)."""


def streaming_objects(project: Project, object_id: int | None = None) -> list[ObjectSpec]:
    """The project's streaming objects (or the one ``object_id``). Raises ConfigError when there is none."""
    if object_id is not None:
        obj = project.objects.get(object_id)
        if obj is None or obj.streaming is None:
            ids = ", ".join(str(o.id) for o in project.objects.values() if o.streaming is not None) or "none"
            raise ConfigError(f"object {object_id} is not a streaming object of {project.source_file} (streaming objects: {ids})")
        return [obj]
    found = [o for o in project.objects.values() if o.streaming is not None]
    if not found:
        raise ConfigError(f"{project.source_file} has no streaming object; give an object 'streaming: {{trigger: ...}}'")
    return found


def topics_of(obj: ObjectSpec) -> list[str]:
    """The topics a streaming object's Kafka source reads: ``topic``, then each of ``topics`` (once each)."""
    assert obj.source is not None
    raw, more = obj.source.get("topic"), obj.source.get("topics")
    topics = list(dict.fromkeys([*([raw] if isinstance(raw, str) else list(raw or [])), *list(more or [])]))
    if not topics:
        raise ConfigError(f"object {obj.id} ({obj.name}): its kafka source names no topic", obj.origin.file, obj.origin.line)
    return [str(t) for t in topics]


def bootstrap_of(project: Project, obj: ObjectSpec) -> str:
    """``bootstrap.servers`` of the object's source: its ``connection`` (a project connection or a kafka:// URL)."""
    assert obj.source is not None
    name = str(obj.source.get("connection") or "")
    connection = project.connections.get(name)
    url = connection.url if connection is not None else name
    if not url.startswith("kafka://"):
        raise ConfigError(
            f"object {obj.id} ({obj.name}): source connection {name!r} is not a kafka:// connection of the project",
            obj.origin.file,
            obj.origin.line,
        )
    return kafka_servers(url)


def record_settings(obj: ObjectSpec) -> RecordSettings:
    """The decoding options (format, schema, metadata columns, dead letters) of the object's Kafka source."""
    assert obj.source is not None
    options = obj.source.options
    if isinstance(options, RecordSettings):
        return options
    fields = {
        name: getattr(options, name) for name in RecordSettings.__struct_fields__ if getattr(options, name, None) is not None
    }
    return RecordSettings(**fields)


class MicroBatcher:
    """The loop of one streaming object (see the module). ``stop()`` may be called from any thread."""

    def __init__(self, project: Project, obj: ObjectSpec, lake: Lake, status: StreamStatus | None = None) -> None:
        assert obj.streaming is not None and obj.source is not None
        self.project, self.obj, self.lake = project, obj, lake
        self.settings: StreamingSettings = obj.streaming
        self.layer = layer_of(project, obj)
        self.status = status or StreamStatus(obj.id, obj.name)
        self.records = record_settings(obj)
        self.topics = topics_of(obj)
        self.bootstrap = bootstrap_of(project, obj)
        self.where = f"object {obj.id} ({obj.name})"
        self.stream = stream_of(project.name, self.where, lake, self.layer, obj.name)
        """The identity of its dead letters (``sluice.errors.stream``): project, object and lake output."""
        self._sent = SentLetters(self.bootstrap, self.where, self.stream)
        """The dead letters sent for records the lake has not committed (read back when the loop starts)."""
        self._stop = threading.Event()
        self.available_now = False
        """True: stop once everything the topics held when the loop started is committed (``--available-now``)."""
        self._targets: Offsets | None = None
        self._times_seen = False  # a window has read at least one readable event time in this run
        self._warned_sources = False  # the log said that streaming.sql drops the window's partition column
        for topic in self.topics:  # the series exist at zero from the start (sluice_kafka_dead_letters_total)
            metrics.child(metrics.KAFKA_DEAD_LETTERS, str(obj.id), topic)

    def stop(self) -> None:
        """Ask the loop to commit what it has gathered and end."""
        self._stop.set()
        if self.status.state in ("starting", "running", "lake_unreachable"):
            self.status.set_state("stopping")

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, until: Until | None = None) -> StreamStatus:
        """Run until stopped, ``until`` says so, or a terminal error (state ``failed``, the error re-raised)."""
        try:
            self._run(until)
        except LakeUnreachable as exc:  # stopped during an outage: nothing committed, nothing lost
            log.warning("%s", exc)
            self.status.set_state("stopped", str(exc))
            return self.status
        except BaseException as exc:
            self.status.set_state("failed", str(exc) if isinstance(exc, SluiceError) else f"{type(exc).__name__}: {exc}")
            raise
        self.status.set_state("stopped")
        return self.status

    def _run(self, until: Until | None) -> None:
        commit = self._lake("read its last commit", lambda: self.lake.last_commit(self.layer, self.obj.name)) or {}
        self.status.resumed(commit)
        offsets = decode_offsets(commit.get("offsets"))
        batch_number = int(commit.get("batch", 0))
        known = _schema(commit.get("value_schema"))
        decoder = Decoder(self.records, known)
        self.window = self._window()
        assert self.obj.source is not None
        group = str(self.obj.source.get("group") or f"sluice.stream.{self.project.name}.{self.obj.name}")
        start = str(self.obj.source.get("start", "earliest"))
        consumer = self._kafka("connect", self._consumer(group, offsets, start))
        try:  # Kafka may go away again at any of these: waited for likewise
            self._sent = self._kafka(
                "read back its dead letters",
                lambda: read_back(self.bootstrap, self.where, self.stream, self.records, self.topics, commit),
            )
            self._targets = self._kafka("read the high watermarks", consumer.end_offsets) if self.available_now else None
        except BaseException:  # stopped while waiting, or a terminal error
            consumer.close()
            if self.window is not None:
                self.window.close()
            raise
        dead = DeadLetterProducer(self.bootstrap)
        self._committed = offsets
        self.status.set_state("stopping" if self.stopping else "running")
        committer = _Committer(self._commit, self.obj.name)
        copied: Offsets | None = None
        gathered = offsets
        try:
            while not self.stopping:
                started = time.monotonic()
                parts = self._gather(consumer, until)
                committer.check()
                if parts:
                    batch_number += 1
                    gathered = consumer.positions(gathered)
                    sources = self._sources(consumer, parts, gathered)
                    committer.submit((parts, gathered, decoder, dead, batch_number, started, sources))
                else:
                    self.status.set_idle()
                committed = self._committed
                if committed is not copied:
                    consumer.commit_group(committed)
                    copied = committed
                self.status.set_lag(consumer.lag(committed))
                self.status.set_unreachable(consumer.unreachable())
                if (until is not None and until(self.status)) or self._caught_up():
                    break
        finally:
            try:
                committer.finish()  # the micro-batch handed over is committed before the loop ends
            finally:
                consumer.close()
                if self.window is not None:
                    self.window.close()

    def _sources(self, consumer: StreamConsumer, parts: list[RecordColumns], positions: Offsets) -> _Partitions | None:
        """For a window: each message's partition (codes per part), every partition's name, and those read to their end
        when the micro-batch is cut (:class:`~sluice.streaming.windows.Sources`)."""
        if self.window is None:
            return None
        codes = [consumer.partition_codes(part) for part in parts]
        return _Partitions(codes, consumer.partition_names(), consumer.read_to_end(positions, self._targets))

    def _consumer(self, group: str, offsets: Offsets, start: str) -> Callable[[], StreamConsumer]:
        return lambda: StreamConsumer(self.bootstrap, self.topics, group, offsets, start=start, stopping=self._stop.is_set)

    def _window(self) -> WindowOperator | None:
        """The window operator, its state restored from the lake's last commit."""
        options = self.settings.window
        if options is None:
            return None
        from sluice.streaming.windows import WindowOperator, state_from_bytes

        saved = self._lake("read its window state", lambda: self.lake.last_state(self.layer, self.obj.name))
        return WindowOperator(options, state_from_bytes(saved) if saved is not None else None)

    def _gather(self, consumer: StreamConsumer, until: Until | None) -> list[RecordColumns]:
        """Messages until the trigger fires or a limit is reached, fewer when stopping: in columns, one part per
        ``consume()`` call (the messages themselves are released at once: :mod:`sluice.streaming.columns`)."""
        trigger = self.settings.trigger_settings
        limit = min(trigger.records or self.settings.max_batch_records, self.settings.max_batch_records)
        deadline = time.monotonic() + trigger.interval_s if trigger.interval_s else None
        parts: list[RecordColumns] = []
        count = size = 0
        timestamps = "_timestamp" in self.records.columns
        while count < limit and size < self.settings.max_batch_bytes and not self.stopping:
            wait = IDLE_POLL_S if deadline is None else min(IDLE_POLL_S, deadline - time.monotonic())
            if wait <= 0:
                break
            part = consumer.consume_columns(min(CONSUME_CHUNK, limit - count), wait, timestamps=timestamps)
            if part is not None:
                parts.append(part)
                count += len(part)
                size += part.size
            elif not parts:
                self.status.set_lag(consumer.lag(self._committed))
                self.status.set_unreachable(consumer.unreachable())
                if (until is not None and until(self.status)) or self._caught_up():
                    break
            if parts and self._targets is not None and _reached(consumer.positions(self._committed), self._targets):
                break  # available now: what is left past the targets waits for the next run
        return parts

    def _caught_up(self) -> bool:
        """Available-now mode, and every partition's committed offset has reached its target."""
        return self._targets is not None and _reached(self._committed, self._targets)

    def _commit(
        self,
        parts: list[RecordColumns],
        ahead: Offsets,
        decoder: Decoder,
        dead: DeadLetterProducer,
        batch_number: int,
        started: float,
        partitions: _Partitions | None = None,
    ) -> None:
        """Decode, transform and append one micro-batch with the offsets after its last record (the committer's
        thread, one batch at a time, in order)."""
        messages = RecordColumns.join(parts)
        del parts
        token = batch_token(batch_number, ahead)
        decoded = decoder.decode(messages)
        decoder.check_declared(decoded, self.where)  # a declared type that fits no record: stop, commit nothing
        self._dead_letters(decoded.rejected, messages, dead)
        table = pa.Table.from_batches([decoded.batch])
        if partitions is not None:
            table = table.append_column(SOURCE_COLUMN, pa.array(partitions.kept(decoded.rejected, len(messages))))
        table = self._transform(table)
        late, state, invalid = 0, None, 0
        if self.window is not None:
            table, late, invalid, state = self._windowed(table, messages[0].topic(), dead, token, partitions)
        record = {
            "offsets": encode_offsets(ahead),
            "batch": batch_number,
            "at": time.time(),
            "records": len(messages),
            "rows": table.num_rows,
            "value_schema": _schema_text(decoder.value_schema),
            **self._sent.commit_record(),
        }
        crash_point(len(decoded.rejected) + invalid)
        self._append(table, record, state, token)
        compact_when_due(self.lake, self.layer, self.obj.name, self.settings.compact, batch_number)
        self._committed = ahead  # one reference swapped: the loop's thread reads it for lag and the group copy
        info = BatchInfo(batch_number, record["at"], table.num_rows, len(messages), messages.size, time.monotonic() - started)
        self.status.committed(info, dead_letters=len(decoded.rejected) + invalid, late=late)

    def _windowed(
        self, table: pa.Table, topic: str, dead: DeadLetterProducer, token: str, partitions: _Partitions | None
    ) -> tuple[pa.Table, int, int, bytes]:
        """The windows this micro-batch closes, its late records (counted; appended to ``<name>_late`` for a side
        output, at least once), records without an event time (dead letters), and the operator's state.

        The watermark is kept per partition (:class:`~sluice.streaming.windows.Sources`) from the column
        :data:`~sluice.streaming.windows.SOURCE_COLUMN`; a ``sql`` that drops it makes the stream one partition
        (the largest event time of all), said once in the log."""
        from sluice.streaming.windows import Sources, state_to_bytes

        assert self.window is not None
        sources = None
        if SOURCE_COLUMN in table.column_names:
            codes = table.column(SOURCE_COLUMN).to_numpy()
            table = table.drop_columns([SOURCE_COLUMN])
            if partitions is not None:
                sources = Sources(codes, partitions.names, partitions.idle)
        elif partitions is not None and not self._warned_sources:
            self._warned_sources = True
            log.warning(
                "%s: streaming.sql drops the column %s, so the window's watermark is the largest event time of all "
                "partitions, not the smallest of each partition's (docs/streaming.md#semantics): keep it (SELECT *, "
                "or name it)",
                self.where,
                SOURCE_COLUMN,
            )
        result = self.window.process(table, sources)
        if result.late is not None and result.late.num_rows:
            self._append(result.late, {"side_output_of": self.obj.name}, None, f"{token}:late", name=f"{self.obj.name}_late")
        where = self.where
        invalid = result.invalid.num_rows
        if invalid < table.num_rows:
            self._times_seen = True
        elif invalid and not self._times_seen and table.column(self.window.options.time_column).null_count < invalid:
            # not one readable event time yet, though the column has values: the option, not the data, is wrong
            raise TerminalError(
                f"{where}: window time_column {self.window.options.time_column!r} holds no readable time "
                f"({result.invalid_reason}); name a timestamp, date or ISO-8601 column"
            )
        if invalid:
            target = self.records.dead_letter_topic(topic)
            if target is None:
                raise TerminalError(f"{where}: {result.invalid_reason}; set dead_letter: true")
            reason = result.invalid_reason
            log.warning("%s: %d records without a readable event time dead-lettered to %s: %s", where, invalid, target, reason)
            dead.send_rows(target, result.invalid, result.invalid_reason, topic, where)
            metrics.child(metrics.KAFKA_DEAD_LETTERS, str(self.obj.id), topic).inc(result.invalid.num_rows)
        return result.closed, result.late_records, result.invalid.num_rows, state_to_bytes(result.state)

    def _dead_letters(self, rejected: list[Rejected], messages: RecordColumns, dead: DeadLetterProducer) -> None:
        """Send the rejected records to their topic's dead-letter topic (:mod:`sluice.streaming.dead_letters`) and wait
        for the acknowledgement; TerminalError with ``dead_letter: false``."""
        if not rejected:
            return
        target_of = self.records.dead_letter_topic
        for topic, count in set_aside(dead.producer, target_of, messages, rejected, self.where, self._sent).items():
            metrics.child(metrics.KAFKA_DEAD_LETTERS, str(self.obj.id), topic).inc(count)

    def _transform(self, table: pa.Table) -> pa.Table:
        sql = self.settings.sql
        if sql is None:
            return table
        import pyarrow.dataset as ds

        from sluice.transforms.sql import run_sql

        inputs = {BATCH_TABLE: ds.dataset(table)}
        return run_sql(sql, inputs, object_label=self.where).read_all()

    def _append(self, table: pa.Table, record: dict[str, Any], state: bytes | None, token: str, name: str | None = None) -> None:
        """Append, tried again for as long as the lake is unreachable (:meth:`_lake`) with the same rows, offsets and
        idempotency ``token`` (:func:`batch_token`): an attempt that did commit before its answer was lost makes the
        next one add nothing."""
        target = name or self.obj.name
        self._lake(
            f"commit micro-batch {token.split(':')[1]} to {target}",
            lambda: self.lake.append(self.layer, target, table.to_reader(), commit=record, token=token, state=state),
        )

    def _lake(self, what: str, call: Callable[[], T]) -> T:
        """``call()`` (a lake operation). While the lake cannot be reached, tried again with exponential backoff
        (:data:`BACKOFF_FIRST_S` .. :data:`BACKOFF_CAP_S`) for ever: the outage is logged once and the status is
        ``lake_unreachable`` until an attempt succeeds. Raises :class:`LakeUnreachable` when the loop is asked to
        stop meanwhile, and at once what is not an outage (TerminalError: a refused request, a schema conflict)."""
        return self._patiently(what, call, kafka=False)

    def _kafka(self, what: str, call: Callable[[], T]) -> T:
        """``call()`` (a start-up request to Kafka: the consumer's metadata, the dead letters read back, the high
        watermarks). While the broker cannot be reached (TransientError), tried again like :meth:`_lake`, the status
        saying ``Kafka at H:P unreachable since HH:MM:SS`` (as an outage mid-stream does): a stream started before its
        broker waits for it. Raises :class:`LakeUnreachable` when asked to stop meanwhile, and at once what is not an
        outage (TerminalError: a topic that does not exist)."""
        return self._patiently(f"{what} to Kafka at {self.bootstrap}" if what == "connect" else what, call, kafka=True)

    def _patiently(self, what: str, call: Callable[[], T], *, kafka: bool) -> T:
        """:meth:`_lake` (``kafka`` False) or :meth:`_kafka` (True): the backoff, its log lines and status, the stop."""
        delay = BACKOFF_FIRST_S
        since: float | None = None
        attempts = 0
        side = f"Kafka at {self.bootstrap}" if kafka else "the lake"
        while True:
            try:
                result = call()
            except (TransientError, OSError) as exc:
                if isinstance(exc, _NOT_AN_OUTAGE) or (kafka and not isinstance(exc, TransientError)):
                    raise
                attempts += 1
                error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if since is None:
                    since = time.time()
                    (log.warning if kafka else log.error)(  # a broker started after its streams: a boot order
                        "%s: cannot %s: %s; trying again with backoff up to %.0f s, holding its position (nothing is "
                        "lost or repeated)",
                        self.where,
                        what,
                        error if kafka else f"the lake is unreachable ({error})",
                        BACKOFF_CAP_S,
                    )
                    at = time.strftime("%H:%M:%S", time.localtime(since))
                    if kafka:
                        self.status.set_unreachable(f"{side} unreachable since {at}")
                    else:
                        self.status.set_state("lake_unreachable", f"lake unreachable since {at}: {error}")
                if self._stop.wait(delay):
                    raise LakeUnreachable(
                        f"{self.where}: stopped while {side} was unreachable ({error}); could not {what}: "
                        "its records are consumed again at the next start"
                    ) from exc
                delay = min(delay * 2, BACKOFF_CAP_S)
                continue
            if since is not None:
                log.warning(
                    "%s: %s answers again after %.0f s (%d failed attempts); streaming goes on",
                    self.where,
                    side,
                    time.time() - since,
                    attempts,
                )
                if kafka:
                    self.status.set_unreachable(None)
                else:
                    self.status.set_state("stopping" if self.stopping else "running")
            return result


@dataclass(frozen=True, slots=True)
class _Partitions:
    """What the loop's thread knows of a micro-batch's partitions when it cuts it, for the window's watermark: each
    part's partition codes (:meth:`StreamConsumer.partition_codes`), every partition's name, those read to their end."""

    codes: list[np.ndarray[Any, np.dtype[np.int64]]]
    names: list[str]
    idle: frozenset[str]

    def kept(self, rejected: list[Rejected], count: int) -> np.ndarray[Any, np.dtype[np.int64]]:
        """The codes of the decoded rows: those of the ``count`` messages, the ``rejected`` ones left out."""
        codes = np.concatenate(self.codes) if self.codes else np.zeros(0, dtype=np.int64)
        assert len(codes) == count
        if not rejected:
            return codes
        keep = np.ones(count, dtype=bool)
        keep[[r.index for r in rejected]] = False
        return codes[keep]


class _Committer:
    """The thread that commits micro-batches, in order, while the loop gathers the next one.

    :meth:`submit` waits until the previous micro-batch is committed, so at most two are in memory (one being
    committed, one being gathered) and a slow lake slows consumption. An error of the commit is raised by the
    next :meth:`check`, :meth:`submit` or :meth:`finish` in the loop's thread.
    """

    def __init__(self, commit: Callable[..., None], name: str) -> None:
        self._commit = commit
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name=f"stream-commit-{name}", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    self._commit(*item)
            except BaseException as exc:
                self._error = exc
            finally:
                self._queue.task_done()

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, item: tuple[Any, ...]) -> None:
        self._queue.join()
        self.check()
        self._queue.put(item)

    def finish(self) -> None:
        """Wait for the micro-batch handed over, end the thread, raise its error if it had one."""
        self._queue.join()
        self._queue.put(None)
        self._thread.join()
        self.check()


def compact_when_due(lake: Lake, layer: str, name: str, options: CompactSettings | None, batch: int) -> None:
    """After micro-batch number ``batch`` was committed, compact ``layer/name`` when ``options`` ask for it and
    ``batch`` is a multiple of ``options.min_files`` (:meth:`Lake.compact`; the writer's own thread, between two
    of its appends). A transient failure is logged and left for the next turn (the manifest is unchanged)."""
    if options is None or batch % options.min_files:
        return
    try:
        done = lake.compact(layer, name, target_bytes=options.target_bytes, min_files=options.min_files)
    except TransientError as exc:
        log.warning("%s/%s: compaction failed, left for later: %s", layer, name, exc)
        return
    if done.rewritten:
        log.info(
            "%s/%s: %d small files compacted (%d files -> %d)", layer, name, done.rewritten, done.files_before, done.files_after
        )


def run_stream(
    project: Project,
    object_id: int,
    *,
    until: Until | None = None,
    lake: Lake | None = None,
    status: StreamStatus | None = None,
) -> StreamStatus:
    """Run streaming object ``object_id`` of ``project`` in this thread until ``until`` says so (or for ever).

    Returns its final status. Raises ConfigError for an object that is not a streaming one, and what the
    loop raises (TerminalError; an unreachable lake is waited for, see the module).
    """
    from sluice.lake.registry import open_lake

    obj = streaming_objects(project, object_id)[0]
    return MicroBatcher(project, obj, lake or open_lake(project), status).run(until)


def batch_token(batch: int, offsets: Offsets) -> str:
    """The idempotency token of micro-batch number ``batch`` ending at ``offsets``: ``batch:<n>:<digest>`` (the digest
    of the offsets, so a batch 1 of another start of the stream is not taken for this one)."""
    text = json.dumps(encode_offsets(offsets), sort_keys=True).encode()
    return f"batch:{batch}:{hashlib.sha256(text).hexdigest()[:16]}"


def _reached(offsets: Offsets, targets: Offsets) -> bool:
    """True when each partition of ``targets`` is at or past its target offset in ``offsets``."""
    return all(offsets.get(topic, {}).get(p, -1) >= end for topic, parts in targets.items() for p, end in parts.items())


def _schema_text(schema: pa.Schema | None) -> str | None:
    return None if schema is None else base64.b64encode(schema.serialize().to_pybytes()).decode()


def _schema(text: Any) -> pa.Schema | None:
    if not isinstance(text, str):
        return None
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))
