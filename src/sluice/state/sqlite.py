"""State store in a SQLite file (the default: ``.sluice/state.db`` beside the project)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sluice.errors import RunNotFound, StateError
from sluice.sqlite_file import SqliteFile
from sluice.state.base import (
    CHECK_COLUMNS,
    OBJECT_COLUMNS,
    CheckResult,
    LatestOutput,
    Lease,
    ObjectState,
    RunRecord,
    SensorCursor,
    StateStore,
    TickRecord,
    check_results_ddl,
    check_results_upgrade,
    object_row,
    tick_select,
)
from sluice.state.history_tables import HistoryTables, cursor_statements, history_schema

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    targets TEXT NOT NULL,
    options TEXT NOT NULL,
    first_offset INTEGER NOT NULL,
    checkpoint INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_project ON runs(project, started_at);
CREATE TABLE IF NOT EXISTS run_objects (
    run_id TEXT NOT NULL,
    object_id INTEGER NOT NULL,
    stage TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    rows INTEGER,
    duration_s REAL,
    location TEXT,
    content_hash TEXT,
    fingerprint TEXT,
    error TEXT,
    reason TEXT,
    ready_at REAL,
    started_at REAL,
    finished_at REAL,
    PRIMARY KEY (run_id, object_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS latest_outputs (
    project TEXT NOT NULL,
    object_id INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    location TEXT,
    rows INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    loaded_at REAL NOT NULL,
    PRIMARY KEY (project, object_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS source_cursors (
    project TEXT NOT NULL,
    object_id INTEGER NOT NULL,
    value TEXT NOT NULL,
    saved_at REAL NOT NULL,
    PRIMARY KEY (project, object_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS schedule_ticks (
    project TEXT NOT NULL,
    schedule TEXT NOT NULL,
    logical_date TEXT NOT NULL,
    status TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    run_id TEXT,
    reason TEXT,
    PRIMARY KEY (project, schedule, logical_date)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS schedule_ticks_by_run ON schedule_ticks(run_id);
CREATE TABLE IF NOT EXISTS scheduler_leases (
    project TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
""" + history_schema("", "REAL")
_CHECK_SQL_TYPES = {"text": "TEXT", "int": "INTEGER", "float": "REAL", "json": "TEXT", "time": "REAL"}
_SCHEMA += check_results_ddl("check_results", _CHECK_SQL_TYPES)
_SCHEMA += ";\nCREATE INDEX IF NOT EXISTS check_results_by_project ON check_results(project, checked_at);\n"
_CHECK_SELECT = "SELECT " + ", ".join(f'"{c}"' for c in CHECK_COLUMNS) + " FROM check_results"
_TICK_SELECT = tick_select("")

_RUN_COLUMNS = "run_id, project, status, started_at, finished_at, targets, options, first_offset, checkpoint"
_PLACEHOLDERS = ", ".join("?" * (len(OBJECT_COLUMNS) + 1))
_UPSERT_OBJECT = f"INSERT OR REPLACE INTO run_objects(run_id, {', '.join(OBJECT_COLUMNS)}) VALUES ({_PLACEHOLDERS})"


def _check_result(row: Sequence[Any]) -> CheckResult:
    values = dict(zip(CHECK_COLUMNS, row, strict=True))
    values["sample"] = json.loads(values["sample"])
    return CheckResult(**values)


def _run(row: Sequence[Any]) -> RunRecord:
    return RunRecord(
        run_id=row[0],
        project=row[1],
        status=row[2],
        started_at=row[3],
        finished_at=row[4],
        targets=json.loads(row[5]),
        options=json.loads(row[6]),
        first_offset=row[7],
        checkpoint=row[8],
    )


class SqliteStateStore(HistoryTables, StateStore):
    """A :class:`StateStore` in one SQLite file; one connection per thread."""

    def __init__(self, path: str | Path) -> None:
        self.db = SqliteFile(path, "the state store", StateError, _SCHEMA)
        self.path = self.db.path
        self.url = f"sqlite:///{self.path}"
        self._upgrade()

    def _upgrade(self) -> None:
        """Add the columns a store made by an earlier version lacks (``check_results``' ``covered``, ``rows_checked``)."""
        have = [row[1] for row in self.db.conn().execute("PRAGMA table_info(check_results)").fetchall()]
        statements = check_results_upgrade("check_results", _CHECK_SQL_TYPES, have)
        if statements:
            with self.db.write() as conn:
                have = [row[1] for row in conn.execute("PRAGMA table_info(check_results)").fetchall()]
                for statement in check_results_upgrade("check_results", _CHECK_SQL_TYPES, have):
                    conn.execute(statement)

    def create_run(self, run: RunRecord, objects: Sequence[ObjectState]) -> None:
        self.create_runs([(run, objects)])

    def create_runs(self, runs: Sequence[tuple[RunRecord, Sequence[ObjectState]]]) -> None:
        with self.db.write() as conn:
            conn.executemany(
                f"INSERT INTO runs({_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        run.run_id,
                        run.project,
                        run.status,
                        run.started_at,
                        run.finished_at,
                        json.dumps(run.targets),
                        json.dumps(run.options),
                        run.first_offset,
                        run.checkpoint,
                    )
                    for run, _ in runs
                ],
            )
            conn.executemany(_UPSERT_OBJECT, [object_row(run.run_id, state) for run, objects in runs for state in objects])

    def save(self, run_id: str, objects: Sequence[ObjectState], checkpoint: int | None = None) -> None:
        with self.db.write() as conn:
            conn.executemany(_UPSERT_OBJECT, [object_row(run_id, state) for state in objects])
            if checkpoint is not None:
                conn.execute("UPDATE runs SET checkpoint = ? WHERE run_id = ?", (checkpoint, run_id))

    def finish_run(self, run_id: str, status: str, finished_at: float) -> None:
        with self.db.write() as conn:
            conn.execute("UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?", (status, finished_at, run_id))

    def set_run_status(self, run_id: str, status: str, finished_at: float | None, *, expected: str) -> bool:
        with self.db.write() as conn:
            cursor = conn.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ? AND status = ?",
                (status, finished_at, run_id, expected),
            )
            return cursor.rowcount == 1

    def get_run(self, run_id: str) -> RunRecord:
        row = self.db.conn().execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(f"no run with id '{run_id}'; list runs with 'sluice runs PATH'")
        return _run(row)

    def list_runs(self, project: str | None = None, limit: int = 50) -> list[RunRecord]:
        if project is None:
            rows = self.db.conn().execute(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY started_at DESC LIMIT ?", (limit,))
        else:
            rows = self.db.conn().execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE project = ? ORDER BY started_at DESC LIMIT ?", (project, limit)
            )
        return [_run(row) for row in rows]

    def object_states(self, run_id: str) -> dict[int, ObjectState]:
        rows = self.db.conn().execute(f"SELECT {', '.join(OBJECT_COLUMNS)} FROM run_objects WHERE run_id = ?", (run_id,))
        return {row[0]: ObjectState(*row) for row in rows}

    def object_state(self, run_id: str, object_id: int) -> ObjectState | None:
        row = (
            self.db.conn()
            .execute(
                f"SELECT {', '.join(OBJECT_COLUMNS)} FROM run_objects WHERE run_id = ? AND object_id = ?", (run_id, object_id)
            )
            .fetchone()
        )
        return None if row is None else ObjectState(*row)

    def unfinished_run(self, project: str) -> RunRecord | None:
        row = (
            self.db.conn()
            .execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE project = ? AND status = 'running' ORDER BY started_at DESC LIMIT 1",
                (project,),
            )
            .fetchone()
        )
        return None if row is None else _run(row)

    def record_outputs(self, project: str, outputs: Sequence[LatestOutput]) -> None:
        if not outputs:
            return
        with self.db.write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO latest_outputs"
                "(project, object_id, fingerprint, content_hash, location, rows, run_id, loaded_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (project, o.object_id, o.fingerprint, o.content_hash, o.location, o.rows, o.run_id, o.loaded_at)
                    for o in outputs
                ],
            )

    def latest_outputs(self, project: str) -> Mapping[int, LatestOutput]:
        rows = self.db.conn().execute(
            "SELECT object_id, fingerprint, content_hash, location, rows, run_id, loaded_at "
            "FROM latest_outputs WHERE project = ?",
            (project,),
        )
        return {row[0]: LatestOutput(*row) for row in rows}

    def source_cursors(self, project: str) -> Mapping[int, str]:
        rows = self.db.conn().execute("SELECT object_id, value FROM source_cursors WHERE project = ?", (project,))
        return {row[0]: row[1] for row in rows}

    def save_source_cursor(self, project: str, object_id: int, value: str, saved_at: float) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO source_cursors(project, object_id, value, saved_at) VALUES (?, ?, ?, ?)",
                (project, object_id, value, saved_at),
            )

    def reset_source_cursors(self, project: str, object_ids: Sequence[int] | None = None) -> list[int]:
        with self.db.write() as conn:
            rows = conn.execute("SELECT object_id FROM source_cursors WHERE project = ?", (project,)).fetchall()
            chosen = sorted(row[0] for row in rows if object_ids is None or row[0] in object_ids)
            conn.executemany("DELETE FROM source_cursors WHERE project = ? AND object_id = ?", [(project, i) for i in chosen])
        return chosen

    def record_check_results(self, results: Sequence[CheckResult]) -> None:
        if not results:
            return
        columns = ", ".join(f'"{c}"' for c in CHECK_COLUMNS)
        with self.db.write() as conn:
            conn.executemany(
                f"INSERT INTO check_results({columns}) VALUES ({', '.join('?' * len(CHECK_COLUMNS))})",
                [tuple(json.dumps(r.sample) if c == "sample" else getattr(r, c) for c in CHECK_COLUMNS) for r in results],
            )

    def check_results(
        self, project: str, *, run_id: str | None = None, object_id: int | None = None, limit: int = 100
    ) -> list[CheckResult]:
        query = _CHECK_SELECT + " WHERE project = ? AND (? IS NULL OR run_id = ?) AND (? IS NULL OR object_id = ?)"
        rows = self.db.conn().execute(
            query + " ORDER BY checked_at DESC, rowid DESC LIMIT ?", (project, run_id, run_id, object_id, object_id, limit)
        )
        return [_check_result(row) for row in rows]

    def prune_check_results(self, project: str, before: float) -> int:
        with self.db.write() as conn:
            return int(conn.execute("DELETE FROM check_results WHERE project = ? AND checked_at < ?", (project, before)).rowcount)

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self.db.conn().execute(sql.replace("{s}", ""), params).fetchall()

    def _execute_all(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        with self.db.write() as conn:
            return [conn.execute(sql.replace("{s}", ""), params).rowcount for sql, params in statements]

    def _json_field(self, column: str, key: str) -> str:
        return f"json_extract({column}, '$.{key}')"

    def _run_record(self, row: Sequence[Any]) -> RunRecord:
        return _run(row)

    def record_ticks(self, ticks: Sequence[TickRecord], cursors: Sequence[tuple[str, SensorCursor]] = ()) -> list[TickRecord]:
        recorded: list[TickRecord] = []
        with self.db.write() as conn:
            for project, saved in cursors:
                for sql, params in cursor_statements(project, saved):
                    conn.execute(sql.replace("{s}", ""), params)
            for t in ticks:
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO schedule_ticks(project, schedule, logical_date, status, recorded_at, run_id, reason) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (t.project, t.schedule, t.logical_date, t.status, t.recorded_at, t.run_id, t.reason),
                )
                if cursor.rowcount == 1:
                    recorded.append(t)
        return recorded

    def last_ticks(self, project: str) -> dict[str, TickRecord]:
        rows = self.db.conn().execute(
            f"{_TICK_SELECT} JOIN (SELECT schedule, MAX(logical_date) AS last FROM schedule_ticks WHERE project = ? "
            "GROUP BY schedule) AS m ON m.schedule = t.schedule AND m.last = t.logical_date WHERE t.project = ?",
            (project, project),
        )
        return {row[1]: TickRecord(*row) for row in rows}

    def ticks(self, project: str, schedule: str | None = None, limit: int = 50) -> list[TickRecord]:
        if schedule is None:
            rows = self.db.conn().execute(
                f"{_TICK_SELECT} WHERE t.project = ? ORDER BY t.logical_date DESC, t.schedule LIMIT ?", (project, limit)
            )
        else:
            rows = self.db.conn().execute(
                f"{_TICK_SELECT} WHERE t.project = ? AND t.schedule = ? ORDER BY t.logical_date DESC LIMIT ?",
                (project, schedule, limit),
            )
        return [TickRecord(*row) for row in rows]

    def running_ticks(self, project: str) -> list[TickRecord]:
        rows = self.db.conn().execute(f"{_TICK_SELECT} WHERE t.project = ? AND r.status = 'running'", (project,))
        return [TickRecord(*row) for row in rows]

    def acquire_lease(self, project: str, holder: str, now: float, ttl_s: float) -> bool:
        with self.db.write() as conn:
            row = conn.execute("SELECT holder, expires_at FROM scheduler_leases WHERE project = ?", (project,)).fetchone()
            if row is not None and row[0] != holder and row[1] > now:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO scheduler_leases(project, holder, expires_at) VALUES (?, ?, ?)",
                (project, holder, now + ttl_s),
            )
        return True

    def release_lease(self, project: str, holder: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM scheduler_leases WHERE project = ? AND holder = ?", (project, holder))

    def lease(self, project: str) -> Lease | None:
        row = (
            self.db.conn()
            .execute("SELECT project, holder, expires_at FROM scheduler_leases WHERE project = ?", (project,))
            .fetchone()
        )
        return None if row is None else Lease(*row)

    def ping(self) -> None:
        self.db.ping()

    def close(self) -> None:
        self.db.close()
