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


@dataclass(slots=True)
class RunRecord:
    """One run (status running, succeeded, failed or cancelled). ``first_offset`` is where its events start on
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
)


_CHECK_TYPES = {"run_id": "text", "project": "text", "object_id": "int", "object": "text", "check": "text", "kind": "text"}
_CHECK_TYPES |= {"severity": "text", "status": "text", "failing_rows": "int", "sample": "json", "message": "text"}
_CHECK_TYPES |= {"duration_s": "float", "checked_at": "time"}


PG_CHECK_TYPES = {"text": "TEXT", "int": "BIGINT", "float": "DOUBLE PRECISION", "json": "JSONB", "time": "DOUBLE PRECISION"}
"""The SQL types of the check results' columns in PostgreSQL (``checked_at`` in epoch seconds)."""


def check_results_ddl(table: str, types: Mapping[str, str]) -> str:
    """``CREATE TABLE IF NOT EXISTS table (...)`` of :data:`CHECK_COLUMNS`, ``types`` naming the SQL type of
    ``text``, ``int``, ``float``, ``json`` and ``time`` (``checked_at``) in the database at hand."""
    columns = ",\n    ".join(f'"{name}" {types[kind]} NOT NULL' for name, kind in _CHECK_TYPES.items())
    return f"CREATE TABLE IF NOT EXISTS {table} (\n    {columns}\n)"


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


class StateStore(ABC):
    """Persistence for runs and objects. Implementations must be safe to use from several threads."""

    url: str

    @abstractmethod
    def create_run(self, run: RunRecord, objects: Sequence[ObjectState]) -> None:
        """Record a new run and the initial state of its planned objects."""

    @abstractmethod
    def save(self, run_id: str, objects: Sequence[ObjectState], checkpoint: int | None = None) -> None:
        """Upsert object states (and the coordinator's checkpoint) in one transaction."""

    @abstractmethod
    def finish_run(self, run_id: str, status: str, finished_at: float) -> None:
        """Close a run with its final status."""

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

    def ping(self) -> None:  # noqa: B027 - optional check
        """Raise StateError when the store cannot be reached."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
