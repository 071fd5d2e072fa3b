"""State store in PostgreSQL (``postgresql://user@host:port/db``), for coordinators on several machines.

Same tables and semantics as ``sqlite.py``, in the schema ``sluice_state`` (created if missing);
targets and options are JSONB, timestamps double precision (seconds since the epoch).

>>> store = PostgresStateStore("postgresql://postgres@127.0.0.1:25432/sluice")   # doctest: +SKIP
>>> store.list_runs("demo", limit=5)                                               # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from sluice.errors import RunNotFound, StateError
from sluice.state.base import (
    CHECK_COLUMNS,
    OBJECT_COLUMNS,
    PG_CHECK_TYPES,
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
CREATE SCHEMA IF NOT EXISTS sluice_state;
CREATE TABLE IF NOT EXISTS sluice_state.runs (
    run_id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    targets JSONB NOT NULL,
    options JSONB NOT NULL,
    first_offset BIGINT NOT NULL,
    checkpoint BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_project ON sluice_state.runs(project, started_at);
CREATE TABLE IF NOT EXISTS sluice_state.run_objects (
    run_id TEXT NOT NULL,
    object_id BIGINT NOT NULL,
    stage TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    rows BIGINT,
    duration_s DOUBLE PRECISION,
    location TEXT,
    content_hash TEXT,
    fingerprint TEXT,
    error TEXT,
    reason TEXT,
    ready_at DOUBLE PRECISION,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    PRIMARY KEY (run_id, object_id)
);
CREATE TABLE IF NOT EXISTS sluice_state.latest_outputs (
    project TEXT NOT NULL,
    object_id BIGINT NOT NULL,
    fingerprint TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    location TEXT,
    rows BIGINT NOT NULL,
    run_id TEXT NOT NULL,
    loaded_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (project, object_id)
);
CREATE TABLE IF NOT EXISTS sluice_state.source_cursors (
    project TEXT NOT NULL,
    object_id BIGINT NOT NULL,
    value TEXT NOT NULL,
    saved_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (project, object_id)
);
CREATE TABLE IF NOT EXISTS sluice_state.schedule_ticks (
    project TEXT NOT NULL,
    schedule TEXT NOT NULL,
    logical_date TEXT NOT NULL,
    status TEXT NOT NULL,
    recorded_at DOUBLE PRECISION NOT NULL,
    run_id TEXT,
    reason TEXT,
    PRIMARY KEY (project, schedule, logical_date)
);
CREATE INDEX IF NOT EXISTS schedule_ticks_by_run ON sluice_state.schedule_ticks(run_id);
CREATE TABLE IF NOT EXISTS sluice_state.scheduler_leases (
    project TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
""" + history_schema("sluice_state.", "DOUBLE PRECISION")
_SCHEMA += check_results_ddl("sluice_state.check_results", PG_CHECK_TYPES)
_SCHEMA += ";\nCREATE INDEX IF NOT EXISTS check_results_by_project ON sluice_state.check_results(project, checked_at);\n"
_SCHEMA += "".join(f"{statement};\n" for statement in check_results_upgrade("sluice_state.check_results", PG_CHECK_TYPES))
_TICK_SELECT = tick_select("sluice_state.")
# Serialises schema creation: concurrent CREATE ... IF NOT EXISTS can still collide in the catalog.
_SCHEMA_LOCK = 0x51_0C_E5_7A_7E

_RUN_COLUMNS = "run_id, project, status, started_at, finished_at, targets, options, first_offset, checkpoint"
_SELECT_RUNS = f"SELECT {_RUN_COLUMNS} FROM sluice_state.runs"
_OUTPUT_COLUMNS = ("object_id", "fingerprint", "content_hash", "location", "rows", "run_id", "loaded_at")


def _upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    updates = ", ".join(f"{column} = EXCLUDED.{column}" for column in columns if column not in key)
    return (
        f"INSERT INTO sluice_state.{table}({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


_UPSERT_OBJECT = _upsert("run_objects", ("run_id", *OBJECT_COLUMNS), ("run_id", "object_id"))
_UPSERT_CURSOR = _upsert("source_cursors", ("project", "object_id", "value", "saved_at"), ("project", "object_id"))
_UPSERT_OUTPUT = _upsert("latest_outputs", ("project", *_OUTPUT_COLUMNS), ("project", "object_id"))


def _run(row: Sequence[Any]) -> RunRecord:
    return RunRecord(*row)


def _dialect(sql: str) -> str:
    """A statement of :mod:`sluice.state.history_tables` for psycopg: ``%s`` placeholders, the schema prefix."""
    return sql.replace("?", "%s").replace("{s}", "sluice_state.")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class PostgresStateStore(HistoryTables, StateStore):
    """A :class:`StateStore` in a PostgreSQL database; one connection per thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            # The parser's message quotes the URL, password included: leave it out.
            raise StateError(
                "the PostgreSQL state store URL cannot be parsed; use postgresql://user:password@host:port/database "
                "with special characters in the password percent-encoded"
            ) from None
        # Named in messages instead of the URL, which may hold a password.
        host, port = params.get("host", "localhost"), params.get("port", 5432)
        self.where = f"{host}:{port}/{params.get('dbname', params.get('user', ''))}"
        self._local = threading.local()
        # (thread, connection): those of ended threads are closed when the next one opens, as the SQLite store
        # does (a scheduler's and a server's runs each write from a thread of their own: kept, they reached the
        # server's max_connections after a few hundred runs, bench/schedules.py --state postgresql://...)
        self._all: list[tuple[threading.Thread, psycopg.Connection[tuple[Any, ...]]]] = []
        self._lock = threading.Lock()
        with self._write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            conn.execute(_SCHEMA)

    def _conn(self) -> psycopg.Connection[tuple[Any, ...]]:
        conn: psycopg.Connection[tuple[Any, ...]] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            try:
                conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            except psycopg.Error as exc:
                raise StateError(
                    f"cannot connect to the PostgreSQL state store at {self.where}: {_first_line(exc)}; "
                    "check that the server is running and reachable, and the user, password and database in the state URL"
                ) from exc
            self._local.conn = conn
            with self._lock:
                ended = [c for thread, c in self._all if not thread.is_alive()]
                self._all = [(thread, c) for thread, c in self._all if thread.is_alive()]
                self._all.append((threading.current_thread(), conn))
            for old in ended:
                old.close()
        return conn

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        try:
            yield self._conn()
        except psycopg.OperationalError as exc:
            raise StateError(
                f"the PostgreSQL state store at {self.where} failed: {_first_line(exc)}; check that the server is still running"
            ) from exc

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        with self._connection() as conn, conn.transaction():
            yield conn

    def _rows(self, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            return conn.execute(query, params).fetchall()

    def create_run(self, run: RunRecord, objects: Sequence[ObjectState]) -> None:
        self.create_runs([(run, objects)])

    def create_runs(self, runs: Sequence[tuple[RunRecord, Sequence[ObjectState]]]) -> None:
        with self._write() as conn:
            conn.cursor().executemany(
                f"INSERT INTO sluice_state.runs({_RUN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        run.run_id,
                        run.project,
                        run.status,
                        run.started_at,
                        run.finished_at,
                        Jsonb(run.targets),
                        Jsonb(run.options),
                        run.first_offset,
                        run.checkpoint,
                    )
                    for run, _ in runs
                ],
            )
            rows = [object_row(run.run_id, state) for run, objects in runs for state in objects]
            if rows:
                conn.cursor().executemany(_UPSERT_OBJECT, rows)

    def save(self, run_id: str, objects: Sequence[ObjectState], checkpoint: int | None = None) -> None:
        with self._write() as conn:
            conn.cursor().executemany(_UPSERT_OBJECT, [object_row(run_id, state) for state in objects])
            if checkpoint is not None:
                conn.execute("UPDATE sluice_state.runs SET checkpoint = %s WHERE run_id = %s", (checkpoint, run_id))

    def finish_run(self, run_id: str, status: str, finished_at: float) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE sluice_state.runs SET status = %s, finished_at = %s WHERE run_id = %s", (status, finished_at, run_id)
            )

    def set_run_status(self, run_id: str, status: str, finished_at: float | None, *, expected: str) -> bool:
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE sluice_state.runs SET status = %s, finished_at = %s WHERE run_id = %s AND status = %s",
                (status, finished_at, run_id, expected),
            )
            return cursor.rowcount == 1

    def get_run(self, run_id: str) -> RunRecord:
        rows = self._rows(f"{_SELECT_RUNS} WHERE run_id = %s", (run_id,))
        if not rows:
            raise RunNotFound(f"no run with id '{run_id}'; list runs with 'sluice runs PATH'")
        return _run(rows[0])

    def list_runs(self, project: str | None = None, limit: int = 50) -> list[RunRecord]:
        if project is None:
            rows = self._rows(f"{_SELECT_RUNS} ORDER BY started_at DESC LIMIT %s", (limit,))
        else:
            rows = self._rows(f"{_SELECT_RUNS} WHERE project = %s ORDER BY started_at DESC LIMIT %s", (project, limit))
        return [_run(row) for row in rows]

    def object_states(self, run_id: str) -> dict[int, ObjectState]:
        rows = self._rows(f"SELECT {', '.join(OBJECT_COLUMNS)} FROM sluice_state.run_objects WHERE run_id = %s", (run_id,))
        return {row[0]: ObjectState(*row) for row in rows}

    def object_state(self, run_id: str, object_id: int) -> ObjectState | None:
        rows = self._rows(
            f"SELECT {', '.join(OBJECT_COLUMNS)} FROM sluice_state.run_objects WHERE run_id = %s AND object_id = %s",
            (run_id, object_id),
        )
        return ObjectState(*rows[0]) if rows else None

    def unfinished_run(self, project: str) -> RunRecord | None:
        rows = self._rows(
            f"{_SELECT_RUNS} WHERE project = %s AND status = 'running' ORDER BY started_at DESC LIMIT 1", (project,)
        )
        return _run(rows[0]) if rows else None

    def record_outputs(self, project: str, outputs: Sequence[LatestOutput]) -> None:
        if not outputs:
            return
        with self._write() as conn:
            conn.cursor().executemany(
                _UPSERT_OUTPUT,
                [(project, *(getattr(output, column) for column in _OUTPUT_COLUMNS)) for output in outputs],
            )

    def latest_outputs(self, project: str) -> Mapping[int, LatestOutput]:
        rows = self._rows(f"SELECT {', '.join(_OUTPUT_COLUMNS)} FROM sluice_state.latest_outputs WHERE project = %s", (project,))
        return {row[0]: LatestOutput(*row) for row in rows}

    def source_cursors(self, project: str) -> Mapping[int, str]:
        rows = self._rows("SELECT object_id, value FROM sluice_state.source_cursors WHERE project = %s", (project,))
        return {row[0]: row[1] for row in rows}

    def save_source_cursor(self, project: str, object_id: int, value: str, saved_at: float) -> None:
        with self._write() as conn:
            conn.execute(_UPSERT_CURSOR, (project, object_id, value, saved_at))

    def reset_source_cursors(self, project: str, object_ids: Sequence[int] | None = None) -> list[int]:
        with self._write() as conn:
            if object_ids is None:
                rows = conn.execute(
                    "DELETE FROM sluice_state.source_cursors WHERE project = %s RETURNING object_id", (project,)
                ).fetchall()
            else:
                rows = conn.execute(
                    "DELETE FROM sluice_state.source_cursors WHERE project = %s AND object_id = ANY(%s) RETURNING object_id",
                    (project, list(object_ids)),
                ).fetchall()
        return sorted(row[0] for row in rows)

    def record_check_results(self, results: Sequence[CheckResult]) -> None:
        if not results:
            return
        columns = ", ".join(f'"{c}"' for c in CHECK_COLUMNS)
        rows = ", ".join([f"({', '.join(['%s'] * len(CHECK_COLUMNS))})"] * len(results))
        params = [Jsonb(r.sample) if c == "sample" else getattr(r, c) for r in results for c in CHECK_COLUMNS]
        with self._write() as conn:
            conn.execute(f"INSERT INTO sluice_state.check_results({columns}) VALUES {rows}", params)

    def check_results(
        self, project: str, *, run_id: str | None = None, object_id: int | None = None, limit: int = 100
    ) -> list[CheckResult]:
        columns = ", ".join(f'"{c}"' for c in CHECK_COLUMNS)
        rows = self._rows(
            f"SELECT {columns} FROM sluice_state.check_results WHERE project = %s "
            "AND (%s::text IS NULL OR run_id = %s) AND (%s::bigint IS NULL OR object_id = %s) "
            "ORDER BY checked_at DESC LIMIT %s",
            (project, run_id, run_id, object_id, object_id, limit),
        )
        return [CheckResult(**dict(zip(CHECK_COLUMNS, row, strict=True))) for row in rows]

    def prune_check_results(self, project: str, before: float) -> int:
        with self._write() as conn:
            deleted = conn.execute(
                "DELETE FROM sluice_state.check_results WHERE project = %s AND checked_at < %s", (project, before)
            )
            return int(deleted.rowcount)

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._rows(_dialect(sql), params)

    def _execute_all(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        with self._write() as conn:
            return [conn.execute(_dialect(sql), params).rowcount for sql, params in statements]

    def _json_field(self, column: str, key: str) -> str:
        return f"{column}->>'{key}'"

    def _run_record(self, row: Sequence[Any]) -> RunRecord:
        return _run(row)

    def record_ticks(self, ticks: Sequence[TickRecord], cursors: Sequence[tuple[str, SensorCursor]] = ()) -> list[TickRecord]:
        if not ticks:
            return []
        with self._write() as conn:
            for project, saved in cursors:
                for sql, params in cursor_statements(project, saved):
                    conn.execute(_dialect(sql), params)
            rows = conn.execute(
                "INSERT INTO sluice_state.schedule_ticks(project, schedule, logical_date, status, recorded_at, run_id, reason) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::text[], %s::text[]) "
                "ON CONFLICT DO NOTHING RETURNING schedule, logical_date",
                (
                    [t.project for t in ticks],
                    [t.schedule for t in ticks],
                    [t.logical_date for t in ticks],
                    [t.status for t in ticks],
                    [t.recorded_at for t in ticks],
                    [t.run_id for t in ticks],
                    [t.reason for t in ticks],
                ),
            ).fetchall()
        won = set(rows)
        return [t for t in ticks if (t.schedule, t.logical_date) in won]

    def last_ticks(self, project: str) -> dict[str, TickRecord]:
        rows = self._rows(
            f"SELECT DISTINCT ON (t.schedule) * FROM ({_TICK_SELECT} WHERE t.project = %s) AS t "
            "ORDER BY t.schedule, t.logical_date DESC",
            (project,),
        )
        return {row[1]: TickRecord(*row) for row in rows}

    def ticks(self, project: str, schedule: str | None = None, limit: int = 50) -> list[TickRecord]:
        if schedule is None:
            rows = self._rows(
                f"{_TICK_SELECT} WHERE t.project = %s ORDER BY t.logical_date DESC, t.schedule LIMIT %s", (project, limit)
            )
        else:
            rows = self._rows(
                f"{_TICK_SELECT} WHERE t.project = %s AND t.schedule = %s ORDER BY t.logical_date DESC LIMIT %s",
                (project, schedule, limit),
            )
        return [TickRecord(*row) for row in rows]

    def running_ticks(self, project: str) -> list[TickRecord]:
        rows = self._rows(f"{_TICK_SELECT} WHERE t.project = %s AND r.status = 'running'", (project,))
        return [TickRecord(*row) for row in rows]

    def acquire_lease(self, project: str, holder: str, now: float, ttl_s: float) -> bool:
        with self._write() as conn:
            row = conn.execute(
                "INSERT INTO sluice_state.scheduler_leases AS l(project, holder, expires_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (project) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at "
                "WHERE l.holder = EXCLUDED.holder OR l.expires_at <= %s RETURNING holder",
                (project, holder, now + ttl_s, now),
            ).fetchone()
        return row is not None

    def release_lease(self, project: str, holder: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM sluice_state.scheduler_leases WHERE project = %s AND holder = %s", (project, holder))

    def lease(self, project: str) -> Lease | None:
        rows = self._rows("SELECT project, holder, expires_at FROM sluice_state.scheduler_leases WHERE project = %s", (project,))
        return Lease(*rows[0]) if rows else None

    def ping(self) -> None:
        with self._connection() as conn:
            conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._lock:
            for _, conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
