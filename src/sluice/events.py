"""The events Sluice publishes on its bus: versioned, typed schemas encoded as JSON.

Every event carries ``type`` (its class name), ``v`` (schema version), ``run_id`` and ``ts`` (UTC,
ISO 8601). Object events add ``object_id``, ``stage`` and ``attempt``. The JSON Schemas in
``docs/events.md`` are generated from these classes (``sluice events --schema``).

>>> event = ObjectLoaded(run_id="r1", object_id=1001, stage="ingest", attempt=1, rows=10, duration_s=0.1)
>>> decode(encode(event)) == event
True
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import msgspec

# The topics events go on; defined in sluice.bus.names, kept here as part of this module's public API.
from sluice.bus.names import DEAD_LETTER_TOPIC as DEAD_LETTER_TOPIC
from sluice.bus.names import EVENTS_TOPIC as EVENTS_TOPIC
from sluice.bus.names import ready_topic as ready_topic

SCHEMA_VERSION = 1


def now() -> datetime:
    return datetime.now(UTC)


class Event(msgspec.Struct, kw_only=True, tag_field="type", omit_defaults=False):
    """Fields every event has."""

    v: int = SCHEMA_VERSION
    run_id: str
    ts: datetime = msgspec.field(default_factory=partial(datetime.now, UTC))  # now(), without a Python-level call


class RunStarted(Event, tag=True, kw_only=True):
    """A run begins: which project, which targets, which objects are planned."""

    project: str
    targets: list[int]
    planned: list[int]
    fresh: list[int] = []
    force: bool = False
    resumed: bool = False
    logical_date: str | None = None  # ISO 8601, timezone-aware: the date a scheduled or backfilled run processes
    trigger: str = "manual"  # manual, schedule, backfill or sensor
    schedule: str | None = None  # the schedule, sensor or backfill that started it


FAILED_ERROR_CHARS = 300
"""At most this many characters of each failed object's error in :attr:`RunFinished.failed`."""
FAILED_ERRORS = 20
"""Errors given in :attr:`RunFinished.failed` (the lowest ids); the other failed objects have ``""``: the event stays
small (a Kafka message is 1 MB at most) whatever the number of failed objects."""


class RunFinished(Event, tag=True, kw_only=True):
    """A run ends. ``status`` is ``succeeded``, ``failed`` or ``cancelled``; ``counts`` per final status; ``failed``
    every failed object's id with its error (first line, at most :data:`FAILED_ERROR_CHARS` characters, for the first
    :data:`FAILED_ERRORS`; ``""`` for the others), so a reader (the alert service) needs no state store: the event is
    published before the run's final states are saved."""

    status: str
    duration_s: float
    counts: dict[str, int] = {}
    failed: dict[int, str] = {}


class ObjectEvent(Event, kw_only=True):
    """Fields every object event has."""

    object_id: int
    stage: str
    attempt: int = 1


class ObjectReady(ObjectEvent, tag=True, kw_only=True):
    """All parents are loaded: a worker of ``stage`` may process the object.

    ``inputs`` maps each parent's name to the lake location of its output (None when it has none).
    ``delay_s`` and ``fail`` carry ``--simulate`` / ``--fail`` to the worker.
    """

    inputs: dict[str, str | None] = {}
    delay_s: float = 0.0
    fail: bool = False
    logical_date: str | None = None  # the run's logical date (ISO 8601), for ``{{ logical_date }}`` in SQL and options
    load_key: str | None = None  # what destination loads are recorded under instead of the run id (RunOptions.load_key)


class ObjectStarted(ObjectEvent, tag=True, kw_only=True):
    """A worker took the object."""

    worker: str = ""


class ObjectLoaded(ObjectEvent, tag=True, kw_only=True):
    """The object's work succeeded. ``location`` is its lake output, ``content_hash`` its content's hash."""

    worker: str = ""
    rows: int = 0
    duration_s: float = 0.0
    location: str | None = None
    content_hash: str = ""
    destination: str | None = None


class ObjectFailed(ObjectEvent, tag=True, kw_only=True):
    """One attempt failed. ``retryable`` is False for terminal errors; ``final`` when no retry follows."""

    worker: str = ""
    error: str
    error_type: str = ""
    retryable: bool = True
    duration_s: float = 0.0


class ObjectSkipped(ObjectEvent, tag=True, kw_only=True):
    """The object will not run in this run: a parent failed, or it is fresh (unchanged since last success)."""

    reason: str
    fresh: bool = False
    attempt: int = 0


class CheckFinished(ObjectEvent, tag=True, kw_only=True):
    """One data-quality check ran on an object's written output, before its children were released.

    ``status`` is ``passed``, ``failed`` (rows broke the rule) or ``error`` (the check itself could not run);
    ``severity`` ``error`` fails the object, ``warn`` only records. ``failing_rows`` counts rows breaking the
    rule; ``sample`` holds up to a few of their keys as text. ``covered``: what the check looked at, ``load`` (only
    the rows of this load) or ``table`` (the whole output; what events written before the field say);
    ``rows_checked``: how many rows that was (None: not known).
    """

    check: str
    kind: str
    severity: str = "error"
    status: str
    failing_rows: int = 0
    sample: list[str] = []
    message: str = ""
    duration_s: float = 0.0
    covered: str = "table"
    rows_checked: int | None = None


class ScheduleMissed(Event, tag=True, kw_only=True):
    """A schedule's tick did not start a run (``run_id`` empty): skipped by its catch-up policy after downtime,
    or refused because the schedule already had its most concurrent runs. ``logical_date`` is the tick (ISO 8601)."""

    schedule: str
    logical_date: str
    reason: str


AnyEvent = (
    RunStarted
    | RunFinished
    | ObjectReady
    | ObjectStarted
    | ObjectLoaded
    | ObjectFailed
    | ObjectSkipped
    | CheckFinished
    | ScheduleMissed
)
EVENT_TYPES: tuple[type[Event], ...] = (
    RunStarted,
    RunFinished,
    ObjectReady,
    ObjectStarted,
    ObjectLoaded,
    ObjectFailed,
    ObjectSkipped,
    CheckFinished,
    ScheduleMissed,
)

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)

# The codec's own methods, not wrappers: every event of a run goes through them several times.
encode: Callable[[Event], bytes] = _encoder.encode
"""Encode one event as JSON."""
decode: Callable[[bytes], AnyEvent] = _decoder.decode
"""Decode one event; raises ``msgspec.DecodeError`` (a ValueError) on anything malformed."""


def event_type(event: Event) -> str:
    return type(event).__name__


def to_record(event: Event, position: int | None = None) -> dict[str, Any]:
    """A plain dict for JSON output, with ``position`` (the event's offset in the log) when known."""
    record: dict[str, Any] = msgspec.to_builtins(event)
    if position is not None:
        record["position"] = position
    return record


def json_schemas() -> dict[str, Any]:
    """JSON Schema of every event type, for documentation and external consumers."""
    _, components = msgspec.json.schema_components(EVENT_TYPES, ref_template="#/$defs/{name}")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "version": SCHEMA_VERSION, "$defs": components}
