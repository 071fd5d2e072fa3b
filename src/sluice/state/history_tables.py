"""The history tables of the state store (backfills, their dates, sensor cursors), run filters and pruning,
written once for SQLite and PostgreSQL.

A store mixes :class:`HistoryTables` in and gives it three primitives: :meth:`HistoryTables._query` (rows of
a SELECT), :meth:`HistoryTables._execute_all` (statements in one transaction, their row counts) and
:meth:`HistoryTables._json_field` (one key of the runs' JSON ``options`` as text). Statements use ``?``
placeholders and ``{s}`` for the schema prefix (``""`` in SQLite, ``sluice_state.`` in PostgreSQL).
Specs and cursors are JSON text in both; times are epoch seconds.
"""

from __future__ import annotations

import json
import math
import uuid
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from sluice.errors import BackfillNotFound
from sluice.state.base import BackfillDate, BackfillRecord, HistoryStore, RunRecord, SensorCursor


def history_schema(prefix: str, real: str) -> str:
    """``CREATE TABLE`` statements of the history tables; ``real`` the type of epoch seconds."""
    return f"""
CREATE TABLE IF NOT EXISTS {prefix}backfills (
    backfill_id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at {real} NOT NULL,
    finished_at {real},
    spec TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS backfills_by_project ON {prefix}backfills(project, created_at);
CREATE TABLE IF NOT EXISTS {prefix}backfill_dates (
    backfill_id TEXT NOT NULL,
    logical_date TEXT NOT NULL,
    status TEXT NOT NULL,
    run_id TEXT,
    started_at {real},
    finished_at {real},
    error TEXT,
    PRIMARY KEY (backfill_id, logical_date)
);
CREATE TABLE IF NOT EXISTS {prefix}sensor_cursors (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    fired_at {real},
    last_key TEXT,
    updated_at {real} NOT NULL,
    PRIMARY KEY (project, name)
);
CREATE TABLE IF NOT EXISTS {prefix}alert_keys (
    project TEXT NOT NULL,
    key TEXT NOT NULL,
    sent_at {real},
    folded INTEGER NOT NULL,
    since {real},
    claim TEXT NOT NULL,
    sent_folded INTEGER NOT NULL,
    sent_since {real},
    PRIMARY KEY (project, key)
);
"""


_BACKFILL = "backfill_id, project, status, created_at, finished_at, spec"
_DATE = "logical_date, status, run_id, started_at, finished_at, error"
_CURSOR = "name, value, fired_at, last_key, updated_at"
_RUN = "run_id, project, status, started_at, finished_at, targets, options, first_offset, checkpoint"
_FINISHED_RUNS = "FROM {s}runs WHERE project = ? AND status <> 'running' AND finished_at < ?"
_FINISHED_BACKFILLS = "FROM {s}backfills WHERE project = ? AND status <> 'running' AND finished_at < ?"
# Ticks recorded before the cutoff, except each schedule's (or sensor's) latest, which the scheduler's catch-up
# starts from, and those of runs still going, which max_active_runs counts.
_OLD_TICKS = (
    "{s}schedule_ticks WHERE project = ? AND recorded_at < ? AND logical_date < (SELECT MAX(t2.logical_date) "
    "FROM {s}schedule_ticks AS t2 WHERE t2.project = schedule_ticks.project AND t2.schedule = schedule_ticks.schedule) "
    "AND (run_id IS NULL OR run_id NOT IN (SELECT run_id FROM {s}runs WHERE status = 'running'))"
)


# Alert keys: the row of a key is created once; the sender claims it when its last alert was sent before the window
# (keeping the repeats folded so far for its alert); a caller that does not claim it counts one more repeat.
_KEY = "WHERE project = ? AND key = ?"
_NEW_KEY = (
    "INSERT INTO {s}alert_keys(project, key, sent_at, folded, since, claim, sent_folded, sent_since) "
    "VALUES (?, ?, NULL, 0, NULL, '', 0, NULL) ON CONFLICT DO NOTHING"
)
_CLAIM_KEY = (
    "UPDATE {s}alert_keys SET sent_folded = folded, sent_since = since, folded = 0, since = NULL, sent_at = ?, claim = ? "
    f"{_KEY} AND (sent_at IS NULL OR sent_at <= ?)"
)
_FOLD_KEY = f"UPDATE {{s}}alert_keys SET folded = folded + 1, since = COALESCE(since, ?) {_KEY} AND claim <> ?"


def cursor_statements(project: str, cursor: SensorCursor) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements replacing ``project``'s sensor cursor (``?`` placeholders, ``{s}`` schema prefix), for a store
    to run in a transaction of its own or with the tick of the request the cursor fired (``record_ticks``)."""
    return [
        ("DELETE FROM {s}sensor_cursors WHERE project = ? AND name = ?", (project, cursor.name)),
        (
            f"INSERT INTO {{s}}sensor_cursors(project, {_CURSOR}) VALUES (?, ?, ?, ?, ?, ?)",
            (project, cursor.name, json.dumps(cursor.value), cursor.fired_at, cursor.last_key, cursor.updated_at),
        ),
    ]


def _backfill(row: Sequence[Any]) -> BackfillRecord:
    return BackfillRecord(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]))


def _cursor(row: Sequence[Any]) -> SensorCursor:
    return SensorCursor(row[0], json.loads(row[1]), row[2], row[3], row[4])


class HistoryTables(HistoryStore):
    """:class:`HistoryStore` over the three primitives of a SQL store."""

    @abstractmethod
    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` (``?`` placeholders, ``{s}`` schema prefix)."""

    @abstractmethod
    def _execute_all(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Run ``statements`` in one transaction; the row count of each."""

    @abstractmethod
    def _json_field(self, column: str, key: str) -> str:
        """A SQL expression for ``column``'s JSON key ``key`` as text."""

    @abstractmethod
    def _run_record(self, row: Sequence[Any]) -> RunRecord:
        """A row of ``runs`` (columns as in ``_RUN``) as a record."""

    def create_backfill(self, record: BackfillRecord, logical_dates: Sequence[str]) -> None:
        insert = f"INSERT INTO {{s}}backfills({_BACKFILL}) VALUES (?, ?, ?, ?, ?, ?)"
        spec = json.dumps(record.spec)
        values = (record.backfill_id, record.project, record.status, record.created_at, record.finished_at, spec)
        dates = "INSERT INTO {s}backfill_dates(backfill_id, logical_date, status) VALUES (?, ?, 'pending')"
        self._execute_all([(insert, values), *((dates, (record.backfill_id, date)) for date in logical_dates)])

    def get_backfill(self, backfill_id: str) -> BackfillRecord:
        rows = self._query(f"SELECT {_BACKFILL} FROM {{s}}backfills WHERE backfill_id = ?", (backfill_id,))
        if not rows:
            raise BackfillNotFound(f"no backfill with id '{backfill_id}'; list them with 'sluice backfill PATH --list'")
        return _backfill(rows[0])

    def list_backfills(self, project: str, limit: int = 50) -> list[BackfillRecord]:
        rows = self._query(
            f"SELECT {_BACKFILL} FROM {{s}}backfills WHERE project = ? ORDER BY created_at DESC LIMIT ?", (project, limit)
        )
        return [_backfill(row) for row in rows]

    def backfill_dates(self, backfill_id: str) -> list[BackfillDate]:
        rows = self._query(f"SELECT {_DATE} FROM {{s}}backfill_dates WHERE backfill_id = ? ORDER BY logical_date", (backfill_id,))
        return [BackfillDate(*row) for row in rows]

    def backfills_dates(self, backfill_ids: Sequence[str]) -> dict[str, list[BackfillDate]]:
        found: dict[str, list[BackfillDate]] = {backfill_id: [] for backfill_id in backfill_ids}
        if not found:
            return found
        marks = ", ".join("?" * len(found))
        rows = self._query(
            f"SELECT backfill_id, {_DATE} FROM {{s}}backfill_dates WHERE backfill_id IN ({marks}) "
            "ORDER BY backfill_id, logical_date",
            tuple(found),
        )
        for row in rows:
            found[row[0]].append(BackfillDate(*row[1:]))
        return found

    def save_backfill_date(self, backfill_id: str, date: BackfillDate) -> None:
        self._execute_all(
            [
                (
                    "UPDATE {s}backfill_dates SET status = ?, run_id = ?, started_at = ?, finished_at = ?, error = ? "
                    "WHERE backfill_id = ? AND logical_date = ?",
                    (date.status, date.run_id, date.started_at, date.finished_at, date.error, backfill_id, date.logical_date),
                )
            ]
        )

    def finish_backfill(self, backfill_id: str, status: str, finished_at: float | None) -> None:
        self._execute_all(
            [("UPDATE {s}backfills SET status = ?, finished_at = ? WHERE backfill_id = ?", (status, finished_at, backfill_id))]
        )

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
        where, params = ["project = ?"], [project]
        conditions: list[tuple[str, Any]] = [
            ("status = ?", status),
            (f"{self._json_field('options', 'schedule')} = ?", schedule),
            ("started_at >= ?", since),
            ("started_at < ?", until),
        ]
        for condition, value in conditions:
            if value is not None:
                where.append(condition)
                params.append(value)
        rows = self._query(
            f"SELECT {_RUN} FROM {{s}}runs WHERE {' AND '.join(where)} ORDER BY started_at DESC LIMIT ?", (*params, limit)
        )
        return [self._run_record(row) for row in rows]

    def prune_history(self, project: str, before: float, dry_run: bool = False) -> dict[str, int]:
        runs = f"SELECT run_id {_FINISHED_RUNS}"
        backfills = f"SELECT backfill_id {_FINISHED_BACKFILLS}"
        params = (project, before)
        # the project's scheduler lease, its backfills' (<project>/backfill:<id>) and its runs' (<project>/run:<id>)
        # expired before the cutoff
        leases, run_leases = f"{project}/backfill:", f"{project}/run:"
        tables: dict[str, tuple[str, tuple[Any, ...]]] = {
            "schedule_ticks": (_OLD_TICKS, params),
            "run_objects": (f"{{s}}run_objects WHERE run_id IN ({runs})", params),
            "runs": (f"{{s}}runs WHERE run_id IN ({runs})", params),
            "backfill_dates": (f"{{s}}backfill_dates WHERE backfill_id IN ({backfills})", params),
            "backfills": (f"{{s}}backfills WHERE backfill_id IN ({backfills})", params),
            "alert_keys": ("{s}alert_keys WHERE project = ? AND COALESCE(since, sent_at) < ?", params),
            "scheduler_leases": (
                "{s}scheduler_leases WHERE (project = ? OR substr(project, 1, ?) = ? OR substr(project, 1, ?) = ?) "
                "AND expires_at < ?",
                (project, len(leases), leases, len(run_leases), run_leases, before),
            ),
        }
        if dry_run:
            return {name: int(self._query(f"SELECT COUNT(*) FROM {where}", got)[0][0]) for name, (where, got) in tables.items()}
        counts = self._execute_all([(f"DELETE FROM {where}", values) for where, values in tables.values()])
        return dict(zip(tables, counts, strict=True))

    def claim_alert(self, project: str, key: str, window_s: float, now: float) -> tuple[bool, int, float | None]:
        token = uuid.uuid4().hex
        threshold = None if math.isinf(window_s) else now - window_s
        counts = self._execute_all(
            [
                (_NEW_KEY, (project, key)),
                (_CLAIM_KEY, (now, token, project, key, threshold)),
                (_FOLD_KEY, (now, project, key, token)),
            ]
        )
        if counts[1] != 1:
            return False, 0, None
        rows = self._query(f"SELECT claim, sent_folded, sent_since FROM {{s}}alert_keys {_KEY}", (project, key))
        if not rows or rows[0][0] != token:  # claimed again since (its window passed meanwhile): nothing to fold
            return True, 0, None
        return True, int(rows[0][1]), rows[0][2]

    def sensor_cursor(self, project: str, name: str) -> SensorCursor | None:
        rows = self._query(f"SELECT {_CURSOR} FROM {{s}}sensor_cursors WHERE project = ? AND name = ?", (project, name))
        return _cursor(rows[0]) if rows else None

    def sensor_cursors(self, project: str) -> list[SensorCursor]:
        rows = self._query(f"SELECT {_CURSOR} FROM {{s}}sensor_cursors WHERE project = ? ORDER BY name", (project,))
        return [_cursor(row) for row in rows]

    def save_sensor_cursor(self, project: str, cursor: SensorCursor) -> None:
        self._execute_all(cursor_statements(project, cursor))
