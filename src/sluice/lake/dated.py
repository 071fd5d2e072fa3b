"""One lake output per logical date for objects whose work depends on the date, and which of them is current.

An object whose ``sql:`` or source options hold ``{{ ds }}`` and friends (or one of whose ancestors does:
:func:`sluice.scheduling.templating.dated_objects`) processes a different slice for each logical date. In a run
with a logical date (a schedule's tick, a backfill's date, a sensor's run) it writes its own output
``<layer>/<name>.ld-<YYYYMMDDTHHMMSSZ>`` (:func:`dated_name`), and its children in that run read that output (the
location travels in ``ObjectReady.inputs``): runs of two dates at once, a backfill's ``--parallel N``, never read
or overwrite each other's data, as Dagster's partitioned assets and Airflow's per-date paths keep them apart.

The object's plain output ``<layer>/<name>`` (what a run without a logical date, a model's ``{{ this }}``, the
checks of another object, the API and ``sluice`` commands read) then holds **the latest logical date's** data:
after writing its own output and once its checks passed, a run copies it there (:func:`promote`, called by the
worker) unless the plain output already holds a later logical date's (recorded in the Arrow schema's metadata
under ``sluice.logical_date``; an output written by a run without a logical date has none and is replaced). The
check and the copy take turns per output (a lock in the process, and for the local lake a file lock shared with
other processes), so whatever order parallel dates finish in, the plain output ends as ``--parallel 1`` leaves
it: the last date's.

Per-date outputs are kept (one per date, like a partitioned asset's partitions); nothing prunes them yet.

>>> dated_name("orders", "2026-01-02T00:00:00+00:00")
'orders.ld-20260102T000000Z'
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from sluice.lake.base import Lake, LakeWrite

LOGICAL_DATE_KEY = b"sluice.logical_date"
"""Schema metadata key of a promoted plain output: the logical date (UTC ISO text) whose data it holds."""

_locks: dict[tuple[str, str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def stamp(logical_date: str) -> str:
    """``2026-01-02T00:00:00+00:00`` -> ``20260102T000000Z`` (UTC; a naive text is taken as UTC)."""
    return _utc(logical_date).strftime("%Y%m%dT%H%M%SZ")


def dated_name(name: str, logical_date: str) -> str:
    """The lake name of ``name``'s output for ``logical_date`` (ISO text): ``<name>.ld-<YYYYMMDDTHHMMSSZ>``."""
    return f"{name}.ld-{stamp(logical_date)}"


def promote(lake: Lake, layer: str, name: str, written: LakeWrite, logical_date: str, partition_by: Sequence[str] = ()) -> bool:
    """Copy the output ``written`` (the per-date output of ``logical_date``) to ``layer/name`` unless that already
    holds a later logical date's; returns whether it copied. The copy is a plain :meth:`Lake.write` (the lake's
    atomic replacement) of the per-date output's batches, with ``sluice.logical_date`` in the schema metadata.
    Raises what the lake raises."""
    mine = _utc(logical_date)
    with _turn(lake, layer, name):
        held = held_logical_date(lake, layer, name)
        if held is not None and held > mine:
            return False
        reader = lake.read(written.location)
        metadata = dict(reader.schema.metadata or {})
        metadata[LOGICAL_DATE_KEY] = mine.isoformat().encode()
        marked = pa.RecordBatchReader.from_batches(reader.schema.with_metadata(metadata), reader)
        lake.write(layer, name, marked, partition_by=partition_by)
        return True


def held_logical_date(lake: Lake, layer: str, name: str) -> datetime | None:
    """The logical date whose data ``layer/name`` holds (None: no output, or one written by a run without a date)."""
    location = lake.current_location(layer, name)
    if location is None:
        return None
    reader = lake.read(location)
    try:
        value = (reader.schema.metadata or {}).get(LOGICAL_DATE_KEY)
    finally:
        reader.close()
    return _utc(value.decode()) if value else None


@contextlib.contextmanager
def _turn(lake: Lake, layer: str, name: str) -> Iterator[None]:
    """Hold the promotion lock of ``layer/name``: a lock per output in this process, plus an exclusive ``flock`` on
    ``<root>/<layer>/.<name>.promote.lock`` for a local lake (workers in other processes take turns too)."""
    root = getattr(lake, "root", None)
    key = (f"{type(lake).__name__}:{root}", layer, name)
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        if not isinstance(root, Path):
            yield
            return
        import fcntl

        folder = root / layer
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f".{name}.promote.lock").open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).astimezone(UTC)
