"""A streaming object with ``engine: spark``, hosted like a micro-batcher: :class:`SparkStreamer` has
:class:`~sluice.streaming.loop.MicroBatcher`'s ``run`` / ``stop`` / ``status``, so ``sluice stream``, ``sluice
serve`` and ``/streams`` host either (:func:`stream_runner` picks one by the object's engine).

The query itself is :mod:`sluice.streaming.spark_query`; this module maps the object's options onto it:
``source`` (connection, topics, ``schema``, ``columns``), ``streaming.trigger`` (``interval_s``: Spark's
processing-time trigger; ``records`` alone: micro-batches back to back, each at most that many records),
``max_batch_records`` (``maxOffsetsPerTrigger``), ``sql``, ``compact``, the source's ``start`` and ``dead_letter``.
``max_batch_bytes``, ``window`` and the source's ``group`` are the micro-batcher's only (docs/streaming.md).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from typing import Any

from sluice.errors import SluiceError, TerminalError, TransientError
from sluice.lake.base import Lake
from sluice.observability import metrics
from sluice.project.model import ObjectSpec, Project, layer_of
from sluice.streaming.loop import MicroBatcher, Until, bootstrap_of, record_settings, topics_of
from sluice.streaming.spark_query import BatchDone, SparkStream, start_query, uses_s3
from sluice.streaming.status import BatchInfo, StreamStatus

WAIT_S = 0.5
"""How often the host looks at the query (stop requests, ``until``, lag)."""


def stream_runner(project: Project, obj: ObjectSpec, lake: Lake) -> MicroBatcher | SparkStreamer:
    """The loop that runs streaming object ``obj``: Spark Structured Streaming for ``engine: spark``, else Sluice's."""
    return SparkStreamer(project, obj, lake) if obj.chosen_engine == "spark" else MicroBatcher(project, obj, lake)


def spark_stream(project: Project, obj: ObjectSpec) -> SparkStream:
    """The :class:`SparkStream` of streaming object ``obj``. Raises ConfigError / TerminalError for a source that
    is not Kafka or a schema that is not declared."""
    assert obj.streaming is not None
    settings = obj.streaming
    records = record_settings(obj)
    schema = records.declared_schema()
    if schema is None:
        raise TerminalError(
            f"object {obj.id} ({obj.name}): engine: spark needs the record schema declared in its source "
            "(schema: {column: type}); or drop engine: spark to infer it on Sluice's micro-batcher"
        )
    trigger = settings.trigger_settings
    limit = min(trigger.records or settings.max_batch_records, settings.max_batch_records)
    return SparkStream(
        servers=bootstrap_of(project, obj),
        topics=topics_of(obj),
        schema=schema,
        layer=layer_of(project, obj),
        name=obj.name,
        columns=list(records.columns),
        sql=settings.sql,
        trigger_s=trigger.interval_s or 0.0,
        max_batch_records=limit,
        start="latest" if obj.source is not None and obj.source.get("start") == "latest" else "earliest",
        dead_letter=records.dead_letter,
        compact=settings.compact,
        project=project.name,
    )


class SparkStreamer:
    """One ``engine: spark`` streaming object: its Structured Streaming query on the process's Spark session."""

    def __init__(self, project: Project, obj: ObjectSpec, lake: Lake, status: StreamStatus | None = None) -> None:
        self.project, self.obj, self.lake = project, obj, lake
        self.stream = spark_stream(project, obj)
        self.status = status or StreamStatus(obj.id, obj.name)
        self._stop = threading.Event()
        self.available_now = False
        """True: process what the topics hold now, then stop (Spark's ``Trigger.AvailableNow``)."""
        for topic in self.stream.topics:  # the series exist at zero from the start, as on the micro-batcher
            metrics.child(metrics.KAFKA_DEAD_LETTERS, str(obj.id), topic)

    def stop(self) -> None:
        """Ask the query to stop (Spark finishes the micro-batch it is committing)."""
        self._stop.set()
        if self.status.state in ("starting", "running"):
            self.status.set_state("stopping")

    def run(self, until: Until | None = None) -> StreamStatus:
        """Run until stopped, ``until`` says so, or the query fails (state ``failed``, the error raised: the batch
        writer's own SluiceError (a TerminalError for a record that may not be dead-lettered), or TransientError for
        a failed Spark job)."""
        try:
            self._run(until)
        except BaseException as exc:
            self.status.set_state("failed", str(exc))
            raise
        self.status.set_state("stopped")
        return self.status

    def _run(self, until: Until | None) -> None:
        from sluice.transforms.spark_session import object_session

        label = f"object {self.obj.id} ({self.obj.name})"
        session = object_session(self.project.spark, kafka=True, s3=uses_s3(self.lake))
        stream = replace(self.stream, trigger_s=None) if self.available_now else self.stream
        failures: list[SluiceError] = []
        query = start_query(session, self.lake, stream, object_label=label, committed=self._committed, failed=failures.append)
        self.status.set_state("stopping" if self._stop.is_set() else "running")
        error: BaseException | None = None
        try:
            while query.isActive and not self._stop.is_set():
                query.awaitTermination(WAIT_S)
                self.status.set_lag(lag_of(query.lastProgress))
                if until is not None and until(self.status):
                    break
        except Exception as exc:  # Spark's StreamingQueryException: the query failed
            error = exc
        finally:
            if query.isActive:
                query.stop()
        if failures:  # the batch writer's own error (dead_letter: false, a lake refusing the batch...)
            raise failures[-1]
        error = error or query.exception()
        if error is not None:
            first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
            raise TransientError(f"{label}: Spark's streaming query failed: {first}")

    def _committed(self, done: BatchDone) -> None:
        for topic, count in done.dead_letters.items():
            metrics.child(metrics.KAFKA_DEAD_LETTERS, str(self.obj.id), topic).inc(count)
        info = BatchInfo(done.batch_id, time.time(), done.rows, done.records, done.size, done.duration_s)
        self.status.committed(info, dead_letters=sum(done.dead_letters.values()), late=0)


def lag_of(progress: dict[str, Any] | None) -> dict[tuple[str, int], int]:
    """Per (topic, partition), records between the query's end offset and the broker's latest (Spark's progress)."""
    lag: dict[tuple[str, int], int] = {}
    for source in (progress or {}).get("sources", []):
        latest, end = _offsets(source.get("latestOffset")), _offsets(source.get("endOffset"))
        for key, last in latest.items():
            lag[key] = max(0, last - end.get(key, last))
    return lag


def _offsets(raw: Any) -> dict[tuple[str, int], int]:
    parsed = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(parsed, dict):
        return {}
    return {(topic, int(p)): int(o) for topic, parts in parsed.items() if isinstance(parts, dict) for p, o in parts.items()}
