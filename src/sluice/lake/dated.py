"""One lake output per logical date for objects whose work depends on the date, and which of them is current.

An object whose ``sql:`` or source options hold ``{{ ds }}`` and friends (or one of whose ancestors does:
:func:`sluice.scheduling.templating.dated_objects`) processes a different slice for each logical date. In a run
with a logical date (a schedule's tick, a backfill's date, a sensor's run) it writes its own output
``<layer>/<name>.ld-<YYYYMMDDTHHMMSSZ>`` (:func:`dated_name`), and its children in that run read that output (the
location travels in ``ObjectReady.inputs``): runs of two dates at once, a backfill's ``--parallel N``, never read
or overwrite each other's data, as Dagster's partitioned assets and Airflow's per-date paths keep them apart.

The object's plain output ``<layer>/<name>`` (what a run without a logical date, a model's ``{{ this }}``, the
checks of another object, the API and ``sluice`` commands read) then holds **the latest logical date's** data:
once its checks passed, a run makes its per-date output the plain one (:func:`promote`, called by the worker)
unless the plain output already holds a later logical date's. The lake does it without copying the data
(:meth:`Lake.promote <sluice.lake.base.Lake.promote>`): the local lake links the plain output to hard links of
the per-date file, S3 (and a partitioned local output) commits a manifest naming the per-date version's files;
a lake that can do neither copies. The date is recorded with the plain output (:meth:`Lake.promoted_date
<sluice.lake.base.Lake.promoted_date>`; an output written by a run without a logical date has none and is
replaced). The check and the promotion take turns per output (a lock in the process, and for the local lake a
file lock shared with other processes), so whatever order parallel dates finish in, the plain output ends as
``--parallel 1`` leaves it: the last date's.

An object with an ``error`` check, in a run without a logical date, writes ``<layer>/<name>.candidate``
(:data:`CANDIDATE`) the same way, promoted once its checks passed: an output whose check failed never becomes
the plain output, and stays readable there until the object's next run (docs/checks.md).

Per-date outputs are pruned with the project's history (:func:`prune_dated`, called by ``sluice prune`` and the
periodic prune): those last written before the cutoff, but not the one the plain output holds nor those of a
logical date whose run is still running (docs/backfills.md).

>>> dated_name("orders", "2026-01-02T00:00:00+00:00")
'orders.ld-20260102T000000Z'
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from sluice.lake.base import Lake, LakeWrite

CANDIDATE = "candidate"
"""Suffix of the output an object with ``error`` checks writes in a run without a logical date: ``<name>.candidate``."""

_DERIVED = re.compile(r"^(?P<plain>.+)\.(?:ld-(?P<stamp>\d{8}T\d{6}Z)|candidate)$")

_locks: dict[tuple[str, str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def stamp(logical_date: str) -> str:
    """``2026-01-02T00:00:00+00:00`` -> ``20260102T000000Z`` (UTC; a naive text is taken as UTC)."""
    return _utc(logical_date).strftime("%Y%m%dT%H%M%SZ")


def dated_name(name: str, logical_date: str) -> str:
    """The lake name of ``name``'s output for ``logical_date`` (ISO text): ``<name>.ld-<YYYYMMDDTHHMMSSZ>``."""
    return f"{name}.ld-{stamp(logical_date)}"


def candidate_name(name: str) -> str:
    """The lake name of ``name``'s output awaiting its checks in a run without a logical date."""
    return f"{name}.{CANDIDATE}"


def plain_name(derived: str) -> str | None:
    """The plain output a per-date output or candidate is promoted to (``orders.ld-20260102T000000Z`` ->
    ``orders``); None for any other name."""
    match = _DERIVED.match(derived)
    return match.group("plain") if match else None


def promote(
    lake: Lake, layer: str, name: str, written: LakeWrite, logical_date: str | None, partition_by: Sequence[str] = ()
) -> bool:
    """Make ``written`` (a per-date output of ``logical_date``, or a candidate when None) the output ``layer/name``
    unless that already holds a later logical date's (:meth:`Lake.promote`: no copy where the lake can link);
    returns whether it did. Raises what the lake raises."""
    mine = _utc(logical_date) if logical_date else None
    with _turn(lake, layer, name):
        if mine is not None:
            held = held_logical_date(lake, layer, name)
            if held is not None and held > mine:
                return False
        lake.promote(layer, name, written.location, mine.isoformat() if mine else None, partition_by)
        return True


def held_logical_date(lake: Lake, layer: str, name: str) -> datetime | None:
    """The logical date whose data ``layer/name`` holds (None: no output, or one written by a run without a date)."""
    value = lake.promoted_date(layer, name)
    return _utc(value) if value else None


def prune_dated(
    lake: Lake, outputs: Iterable[tuple[str, str]], before: float, running: Iterable[str] = (), dry_run: bool = False
) -> int:
    """Remove the per-date outputs of ``outputs`` (``(layer, name)`` of plain outputs) last written before
    ``before`` (epoch seconds), except the one each plain output holds and those of the logical dates ``running``
    (ISO text: runs still going, which may be resumed and read them); returns how many (would be) removed."""
    keep = {stamp(date) for date in running}
    removed = 0
    for layer, name in outputs:
        found = lake.outputs(layer, f"{name}.ld-")
        if not found:
            continue
        with _turn(lake, layer, name):  # no promotion links to an output while it goes
            held = held_logical_date(lake, layer, name)
            keep_here = keep | ({held.strftime("%Y%m%dT%H%M%SZ")} if held is not None else set())
            for output in found:
                match = _DERIVED.match(output.name)
                if match is None or match.group("plain") != name or not match.group("stamp"):
                    continue
                if output.written_at >= before or match.group("stamp") in keep_here:
                    continue
                if not dry_run:
                    lake.remove(layer, output.name)
                removed += 1
            if not dry_run:
                lake.remove_superseded(layer, name)  # what earlier promotions left linking to removed data
    return removed


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
