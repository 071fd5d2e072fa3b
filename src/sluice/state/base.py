"""The state store: runs, per-object states and attempts, fingerprints of last successes, checkpoints, and the
incremental cursors of sources (the last value an incremental REST source loaded, per object).

The coordinator is the only writer during a run; readers (CLI, server) may read at any time.
One interface, one module per backend (``sqlite.py``, ``postgres.py``), one contract-test suite.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

OBJECT_STATUSES = ("pending", "ready", "running", "retrying", "loaded", "failed", "skipped")
FINAL_OBJECT_STATUSES = frozenset({"loaded", "failed", "skipped"})
RUN_STATUSES = ("running", "succeeded", "failed", "cancelled", "interrupted")
"""A run's statuses. ``interrupted``: its coordinator died (its lease expired) and a later run started by hand (or
``sluice serve`` starting) marked it so; its leftover work is skipped by workers, and ``sluice run PATH --resume --run
ID`` continues it (then it is ``running`` again). The others are final."""
RESUMABLE_RUN_STATUSES = frozenset({"running", "interrupted"})
"""The run statuses whose run may still change (``running``, or ``interrupted`` until resumed)."""


@dataclass(slots=True)
class RunRecord:
    """One run (status one of :data:`RUN_STATUSES`). ``first_offset`` is where its events start on
    the bus; ``checkpoint`` the last one the coordinator applied."""

    run_id: str
    project: str
    status: str
    started_at: float
    finished_at: float | None = None
    targets: list[int] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    first_offset: int = 0
    checkpoint: int = -1


@dataclass(slots=True)
class ObjectState:
    """One object within one run."""

    object_id: int
    stage: str
    status: str = "pending"
    attempt: int = 0
    rows: int | None = None
    duration_s: float | None = None
    location: str | None = None
    content_hash: str | None = None
    fingerprint: str | None = None
    error: str | None = None
    reason: str | None = None
    ready_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None


@dataclass(slots=True)
class LatestOutput:
    """The last successful output of an object, used to skip it as fresh next time."""

    object_id: int
    fingerprint: str
    content_hash: str
    location: str | None
    rows: int
    run_id: str
    loaded_at: float


@dataclass(slots=True)
class CheckResult:
    """One data-quality check's result on one object's output in one run (``sluice.checks``, docs/checks.md).

    ``status``: ``passed``, ``failed`` or ``error`` (the check could not run); ``sample``: up to a few failing rows'
    keys as ``col=value`` text; ``checked_at`` in epoch seconds; ``run_id`` "" for ``sluice check`` outside a run.
    ``covered``: what the check looked at, ``load`` (only the rows of the load checked) or ``table`` (the whole
    output); ``rows_checked``: how many rows that was (None: not known, e.g. a result kept before it was recorded).
    """

    run_id: str
    project: str
    object_id: int
    object: str
    check: str
    kind: str
    severity: str
    status: str
    failing_rows: int = 0
    sample: list[str] = field(default_factory=list)
    message: str = ""
    duration_s: float = 0.0
    checked_at: float = 0.0
    covered: str = "table"
    rows_checked: int | None = None


CHECK_COLUMNS = (
    "run_id",
    "project",
    "object_id",
    "object",
    "check",
    "kind",
    "severity",
    "status",
    "failing_rows",
    "sample",
    "message",
    "duration_s",
    "checked_at",
    "covered",
    "rows_checked",
)


_CHECK_TYPES = {"run_id": "text", "project": "text", "object_id": "int", "object": "text", "check": "text", "kind": "text"}
_CHECK_TYPES |= {"severity": "text", "status": "text", "failing_rows": "int", "sample": "json", "message": "text"}
_CHECK_TYPES |= {"duration_s": "float", "checked_at": "time"}
_CHECK_ADDED = {"covered": ("text", "NOT NULL DEFAULT 'table'"), "rows_checked": ("int", "")}
"""Columns added to the check results after their first version: (kind, constraint). A table made before them gets
them by :func:`check_results_upgrade` (results kept before covered the whole output: ``table``)."""


PG_CHECK_TYPES = {"text": "TEXT", "int": "BIGINT", "float": "DOUBLE PRECISION", "json": "JSONB", "time": "DOUBLE PRECISION"}
"""The SQL types of the check results' columns in PostgreSQL (``checked_at`` in epoch seconds)."""


def check_results_ddl(table: str, types: Mapping[str, str]) -> str:
    """``CREATE TABLE IF NOT EXISTS table (...)`` of :data:`CHECK_COLUMNS`, ``types`` naming the SQL type of
    ``text``, ``int``, ``float``, ``json`` and ``time`` (``checked_at``) in the database at hand."""
    columns = [f'"{name}" {types[kind]} NOT NULL' for name, kind in _CHECK_TYPES.items()]
    columns += [f'"{name}" {types[kind]} {constraint}'.rstrip() for name, (kind, constraint) in _CHECK_ADDED.items()]
    return f"CREATE TABLE IF NOT EXISTS {table} (\n    " + ",\n    ".join(columns) + "\n)"


def check_results_upgrade(table: str, types: Mapping[str, str], have: Sequence[str] | None = None) -> list[str]:
    """``ALTER TABLE table ADD COLUMN ...`` for each column a check results table made by an earlier version lacks:
    those not in ``have`` (its columns), or, with ``have`` None, every one with ``IF NOT EXISTS`` (PostgreSQL)."""
    missing = [name for name in _CHECK_ADDED if have is None or name not in have]
    exists = " IF NOT EXISTS" if have is None else ""
    return [
        f'ALTER TABLE {table} ADD COLUMN{exists} "{name}" {types[_CHECK_ADDED[name][0]]} {_CHECK_ADDED[name][1]}'.rstrip()
        for name in missing
    ]


@dataclass(slots=True)
class TickRecord:
    """One tick of a schedule, recorded before its run starts (``status`` ``fired``) or when it is missed.

    ``logical_date`` is the tick in UTC as ISO text (``2026-01-01T02:00:00+00:00``, sortable as text);
    ``(project, schedule, logical_date)`` is unique, so two schedulers never fire the same tick.
    ``run_status`` is the status of the run ``run_id`` (read from ``runs``; None until the run is recorded).
    """

    project: str
    schedule: str
    logical_date: str
    status: str
    recorded_at: float
    run_id: str | None = None
    reason: str | None = None
    run_status: str | None = None


def tick_select(schema: str = "") -> str:
    """The SELECT of :class:`TickRecord` rows (alias ``t``) with their run's status (``runs`` alias ``r``), for stores
    whose tables are in ``schema`` (``"sluice_state."``) or not (``""``)."""
    return (
        "SELECT t.project, t.schedule, t.logical_date, t.status, t.recorded_at, t.run_id, t.reason, r.status "
        f"FROM {schema}schedule_ticks AS t LEFT JOIN {schema}runs AS r ON r.run_id = t.run_id"
    )


@dataclass(slots=True)
class Lease:
    """Who runs a project's scheduler (``holder``) until ``expires_at`` (epoch seconds)."""

    project: str
    holder: str
    expires_at: float


OBJECT_COLUMNS = (
    "object_id",
    "stage",
    "status",
    "attempt",
    "rows",
    "duration_s",
    "location",
    "content_hash",
    "fingerprint",
    "error",
    "reason",
    "ready_at",
    "started_at",
    "finished_at",
)


def object_row(run_id: str, s: ObjectState) -> tuple[Any, ...]:
    """The row of ``run_objects`` for ``s``, columns in OBJECT_COLUMNS order after run_id."""
    return (
        run_id,
        s.object_id,
        s.stage,
        s.status,
        s.attempt,
        s.rows,
        s.duration_s,
        s.location,
        s.content_hash,
        s.fingerprint,
        s.error,
        s.reason,
        s.ready_at,
        s.started_at,
        s.finished_at,
    )


BACKFILL_DATE_STATUSES = ("pending", "running", "succeeded", "failed")


@dataclass(slots=True)
class BackfillRecord:
    """One backfill: the logical dates of ``spec`` (``from``, ``to``, ``targets``, ``schedule``, ``parallel``) run
    one run each. ``status`` is ``running`` until every date is settled, then ``succeeded`` (every date did) or
    ``failed`` (some date failed); ``refused`` when another backfill being run shared one of its dates before any of
    them ran (``Backfills.run``); times in epoch seconds."""

    backfill_id: str
    project: str
    status: str
    created_at: float
    finished_at: float | None = None
    spec: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class BackfillDate:
    """One logical date of a backfill (ISO 8601 text) and its run: status one of :data:`BACKFILL_DATE_STATUSES`."""

    logical_date: str
    status: str = "pending"
    run_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None


@dataclass(slots=True)
class SensorCursor:
    """What a sensor has seen: ``value`` (JSON: object keys and etags, a bus offset, a run id...), when it last
    fired (``fired_at``, epoch seconds, None: never) and the key of the last :class:`RunRequest` it recorded."""

    name: str
    value: dict[str, Any] = field(default_factory=dict)
    fired_at: float | None = None
    last_key: str | None = None
    updated_at: float = 0.0


class HistoryStore(ABC):
    """The history part of the state store: backfills, sensor cursors, run filters and pruning
    (implemented once for both backends in :mod:`sluice.state.history_tables`)."""

    @abstractmethod
    def create_backfill(self, record: BackfillRecord, logical_dates: Sequence[str]) -> None:
        """Record a new backfill and its dates, all pending."""

    @abstractmethod
    def get_backfill(self, backfill_id: str) -> BackfillRecord:
        """The backfill with that id; raises BackfillNotFound."""

    @abstractmethod
    def list_backfills(self, project: str, limit: int = 50) -> list[BackfillRecord]:
        """The project's backfills, most recent first."""

    @abstractmethod
    def backfill_dates(self, backfill_id: str) -> list[BackfillDate]:
        """The backfill's dates in date order."""

    @abstractmethod
    def backfills_dates(self, backfill_ids: Sequence[str]) -> dict[str, list[BackfillDate]]:
        """The dates of each of ``backfill_ids`` in date order, in one query whatever their number (``GET
        /backfills``); a backfill without dates, or unknown, maps to ``[]``."""

    @abstractmethod
    def save_backfill_date(self, backfill_id: str, date: BackfillDate) -> None:
        """Replace the state of one date of the backfill."""

    @abstractmethod
    def finish_backfill(self, backfill_id: str, status: str, finished_at: float | None) -> None:
        """Set the backfill's status (``finished_at`` None: it is running again, e.g. resumed)."""

    @abstractmethod
    def find_runs(
        self,
        project: str,
        *,
        status: str | None = None,
        schedule: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        """The project's runs, most recent first, with that status, ``options.schedule`` and started in
        ``[since, until)`` (epoch seconds; None: unbounded)."""

    @abstractmethod
    def prune_history(self, project: str, before: float, dry_run: bool = False) -> dict[str, int]:
        """Delete the project's runs (with their object states) and backfills (with their dates) finished
        before ``before`` (epoch seconds), and schedule ticks recorded before it (but each schedule's latest, and
        those of runs still going); running ones are kept. Also alert keys (:meth:`claim_alert`) last sent (or
        last folding a repeat) before it, and the leases of the project's scheduler, backfills and runs
        (``scheduler_leases``: ``<project>``, ``<project>/backfill:<id>``, ``<project>/run:<id>``) that expired before
        it. Returns rows per table (what would go, when ``dry_run``)."""

    @abstractmethod
    def claim_alert(self, project: str, key: str, window_s: float, now: float) -> tuple[bool, int, float | None]:
        """Decide, for every process sharing the store, whether the alert of ``key`` (a rule's throttle key, a
        deadline's run) is sent at ``now`` (epoch seconds): ``(send, folded, since)``. It is sent when no alert of
        ``key`` was sent in the ``window_s`` seconds before (``math.inf``: ever), and then says how many repeats it
        folds (held back since the last one sent) and since when (None: none); a repeat held back is counted. One row
        per key, claimed by a conditional update: of two processes asking at once, one sends."""

    @abstractmethod
    def sensor_cursor(self, project: str, name: str) -> SensorCursor | None:
        """The sensor's cursor, or None before its first poll."""

    @abstractmethod
    def sensor_cursors(self, project: str) -> list[SensorCursor]:
        """Every sensor cursor of the project, by name."""

    @abstractmethod
    def save_sensor_cursor(self, project: str, cursor: SensorCursor) -> None:
        """Replace the sensor's cursor (one write: the cursor and the request it fired go together)."""


class StateStore(HistoryStore):
    """Persistence for runs and objects. Implementations must be safe to use from several threads."""

    url: str

    @abstractmethod
    def create_run(self, run: RunRecord, objects: Sequence[ObjectState]) -> None:
        """Record a new run and the initial state of its planned objects."""

    def create_runs(self, runs: Sequence[tuple[RunRecord, Sequence[ObjectState]]]) -> None:
        """Record several new runs (a scheduler's tick); stores override this with one transaction."""
        for run, objects in runs:
            self.create_run(run, objects)

    @abstractmethod
    def save(self, run_id: str, objects: Sequence[ObjectState], checkpoint: int | None = None) -> None:
        """Upsert object states (and the coordinator's checkpoint) in one transaction."""

    @abstractmethod
    def finish_run(self, run_id: str, status: str, finished_at: float) -> None:
        """Close a run with its final status."""

    @abstractmethod
    def set_run_status(self, run_id: str, status: str, finished_at: float | None, *, expected: str) -> bool:
        """Set the run's status and ``finished_at`` (epoch seconds; None: not finished) if its status is ``expected``,
        in one statement: True when it was (and is now changed), False otherwise. Marks a dead coordinator's run
        ``interrupted`` and makes it ``running`` again on resume without racing another process doing the same."""

    @abstractmethod
    def get_run(self, run_id: str) -> RunRecord:
        """The run with that id; raises RunNotFound."""

    @abstractmethod
    def list_runs(self, project: str | None = None, limit: int = 50) -> list[RunRecord]:
        """Most recent runs first."""

    @abstractmethod
    def object_states(self, run_id: str) -> dict[int, ObjectState]:
        """Every planned object of a run, by id."""

    def object_state(self, run_id: str, object_id: int) -> ObjectState | None:
        """One planned object of a run, or None (stores override this with a query for that row alone)."""
        return self.object_states(run_id).get(object_id)

    @abstractmethod
    def unfinished_run(self, project: str) -> RunRecord | None:
        """The most recent run of ``project`` still marked running (a crashed coordinator's)."""

    @abstractmethod
    def record_outputs(self, project: str, outputs: Sequence[LatestOutput]) -> None:
        """Remember the last successful output of objects."""

    @abstractmethod
    def latest_outputs(self, project: str) -> Mapping[int, LatestOutput]:
        """Last successful outputs of the project's objects, by id."""

    @abstractmethod
    def source_cursors(self, project: str) -> Mapping[int, str]:
        """The saved incremental cursors of the project's sources by object id: JSON text such as ``"2024-05-01T10:00:00Z"``."""

    @abstractmethod
    def save_source_cursor(self, project: str, object_id: int, value: str, saved_at: float) -> None:
        """Keep ``value`` (JSON text) as the object's cursor, replacing the previous one; ``saved_at`` in epoch seconds.

        Called only once the object's output is durable (``runtime/execute.py``), so a failed run never advances it.
        """

    @abstractmethod
    def reset_source_cursors(self, project: str, object_ids: Sequence[int] | None = None) -> list[int]:
        """Forget the cursors of ``object_ids`` (None: all of the project's); the ids that had one, ascending."""

    @abstractmethod
    def record_check_results(self, results: Sequence[CheckResult]) -> None:
        """Keep the results of one object's checks (one insert), for a project without a PostgreSQL warehouse."""

    @abstractmethod
    def check_results(
        self, project: str, *, run_id: str | None = None, object_id: int | None = None, limit: int = 100
    ) -> list[CheckResult]:
        """Kept check results of ``project`` (of one run, of one object), newest first, at most ``limit``."""

    @abstractmethod
    def prune_check_results(self, project: str, before: float) -> int:
        """Forget ``project``'s check results checked before ``before`` (epoch seconds); how many were removed."""

    # ----- schedules (scheduling/scheduler.py) -----------------------------------------------------------

    @abstractmethod
    def record_ticks(self, ticks: Sequence[TickRecord], cursors: Sequence[tuple[str, SensorCursor]] = ()) -> list[TickRecord]:
        """Record the ticks not recorded yet, in one transaction; returns those this call recorded (in order).

        A tick already recorded (by another scheduler, or before a restart) is left as it is and not returned:
        only the caller that recorded a tick starts its run. ``cursors`` (``(project, cursor)``) are saved in the
        same transaction, as :meth:`save_sensor_cursor` would: a sensor's request (a tick) and the cursor that
        fired it are durable together.
        """

    @abstractmethod
    def last_ticks(self, project: str) -> dict[str, TickRecord]:
        """The latest recorded tick of each schedule of ``project`` (fired or missed), by schedule name."""

    @abstractmethod
    def ticks(self, project: str, schedule: str | None = None, limit: int = 50) -> list[TickRecord]:
        """Recorded ticks, latest logical date first (of one schedule, or all), each with its run's status."""

    @abstractmethod
    def running_ticks(self, project: str) -> list[TickRecord]:
        """The fired ticks whose run is still running (what ``max_active_runs`` counts)."""

    @abstractmethod
    def acquire_lease(self, project: str, holder: str, now: float, ttl_s: float) -> bool:
        """Take or renew the project's scheduler lease until ``now + ttl_s``: True when ``holder`` has it (it was
        free, expired, or already its own), False when another holder's lease has not expired."""

    @abstractmethod
    def release_lease(self, project: str, holder: str) -> None:
        """Give the lease up (only if ``holder`` has it), so a standby scheduler takes over at once."""

    @abstractmethod
    def lease(self, project: str) -> Lease | None:
        """The project's scheduler lease, expired or not, or None."""

    def ping(self) -> None:
        """Raise StateError when the store cannot be reached."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
