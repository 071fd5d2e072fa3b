"""State store in a SQLite file (the default: ``.sluice/state.db`` beside the project)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sluice.errors import RunNotFound, StateError
from sluice.state.base import OBJECT_COLUMNS, LatestOutput, ObjectState, RunRecord, StateStore, object_row

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
"""

_RUN_COLUMNS = "run_id, project, status, started_at, finished_at, targets, options, first_offset, checkpoint"
_PLACEHOLDERS = ", ".join("?" * (len(OBJECT_COLUMNS) + 1))
_UPSERT_OBJECT = f"INSERT OR REPLACE INTO run_objects(run_id, {', '.join(OBJECT_COLUMNS)}) VALUES ({_PLACEHOLDERS})"


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


class SqliteStateStore(StateStore):
    """A :class:`StateStore` in one SQLite file; one connection per thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        self.url = f"sqlite:///{self.path}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create the state folder {self.path.parent}: {exc.strerror}") from exc
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise StateError(f"cannot open the state store at {self.path}: {exc}") from exc
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def create_run(self, run: RunRecord, objects: Sequence[ObjectState]) -> None:
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO runs({_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                ),
            )
            conn.executemany(_UPSERT_OBJECT, [object_row(run.run_id, state) for state in objects])

    def save(self, run_id: str, objects: Sequence[ObjectState], checkpoint: int | None = None) -> None:
        with self._write() as conn:
            conn.executemany(_UPSERT_OBJECT, [object_row(run_id, state) for state in objects])
            if checkpoint is not None:
                conn.execute("UPDATE runs SET checkpoint = ? WHERE run_id = ?", (checkpoint, run_id))

    def finish_run(self, run_id: str, status: str, finished_at: float) -> None:
        with self._write() as conn:
            conn.execute("UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?", (status, finished_at, run_id))

    def get_run(self, run_id: str) -> RunRecord:
        row = self._conn().execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(f"no run with id '{run_id}'; list runs with 'sluice runs PATH'")
        return _run(row)

    def list_runs(self, project: str | None = None, limit: int = 50) -> list[RunRecord]:
        if project is None:
            rows = self._conn().execute(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY started_at DESC LIMIT ?", (limit,))
        else:
            rows = self._conn().execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE project = ? ORDER BY started_at DESC LIMIT ?", (project, limit)
            )
        return [_run(row) for row in rows]

    def object_states(self, run_id: str) -> dict[int, ObjectState]:
        rows = self._conn().execute(f"SELECT {', '.join(OBJECT_COLUMNS)} FROM run_objects WHERE run_id = ?", (run_id,))
        return {row[0]: ObjectState(*row) for row in rows}

    def unfinished_run(self, project: str) -> RunRecord | None:
        row = (
            self._conn()
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
        with self._write() as conn:
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
        rows = self._conn().execute(
            "SELECT object_id, fingerprint, content_hash, location, rows, run_id, loaded_at "
            "FROM latest_outputs WHERE project = ?",
            (project,),
        )
        return {row[0]: LatestOutput(*row) for row in rows}

    def ping(self) -> None:
        try:
            self._conn().execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise StateError(f"the state store at {self.path} does not answer: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
