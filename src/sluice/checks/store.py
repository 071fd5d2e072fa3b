"""Where check results are kept: ``metrics.check_results`` in the project's PostgreSQL ``warehouse``, else the state store.

The rule (docs/checks.md): a project with a connection named ``warehouse`` on PostgreSQL keeps them in that
database's ``metrics`` schema (created if missing), beside the tables checked, for dashboards and SQL; any other
project keeps them in its state store (``check_results``), so ``sluice`` can always show them. Each object's
results go in one INSERT.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from sluice.errors import TransientError
from sluice.project.model import Project
from sluice.state.base import CHECK_COLUMNS, PG_CHECK_TYPES, CheckResult, StateStore, check_results_ddl, check_results_upgrade
from sluice.urls import connection_scheme, libpq_url

WAREHOUSE = "warehouse"
TABLE = "metrics.check_results"
_DDL = [
    check_results_ddl(TABLE, {**PG_CHECK_TYPES, "time": "TIMESTAMPTZ"}),
    "CREATE INDEX IF NOT EXISTS check_results_by_object ON metrics.check_results(project, object_id, checked_at)",
    *check_results_upgrade(TABLE, {**PG_CHECK_TYPES, "time": "TIMESTAMPTZ"}),  # a table made by an earlier version
]
_created: set[str] = set()
_lock = threading.Lock()


def warehouse_url(project: Project) -> str | None:
    """The URL of the project's PostgreSQL ``warehouse`` connection, or None."""
    spec = project.connections.get(WAREHOUSE)
    return spec.url if spec is not None and connection_scheme(spec.url) == "postgresql" else None


def save_results(project: Project, state: StateStore | None, results: Sequence[CheckResult]) -> str:
    """Keep ``results`` where the rule says; where they went (``metrics.check_results``, ``state store``, or "").

    Raises TransientError when the warehouse cannot be reached.
    """
    if not results:
        return ""
    url = warehouse_url(project)
    if url is not None:
        _insert(url, results)
        return TABLE
    if state is not None:
        state.record_check_results(results)
        return "state store"
    return ""


def _insert(url: str, results: Sequence[CheckResult]) -> None:
    import psycopg
    from psycopg.types.json import Jsonb

    columns = ", ".join(f'"{c}"' for c in CHECK_COLUMNS)
    values = ", ".join(
        [f"({', '.join('to_timestamp(%s)' if c == 'checked_at' else '%s' for c in CHECK_COLUMNS)})"] * len(results)
    )
    params = [Jsonb(r.sample) if c == "sample" else getattr(r, c) for r in results for c in CHECK_COLUMNS]
    for attempt in (1, 2):  # a second time when the table was dropped since this process created it
        try:
            with psycopg.connect(libpq_url(url), connect_timeout=10) as conn, conn.transaction():
                _create(conn, url)
                conn.execute(f"INSERT INTO {TABLE}({columns}) VALUES {values}", params)
            return
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            _created.discard(url)
            if attempt == 2:
                raise
        except psycopg.OperationalError as exc:
            _created.discard(url)  # the creation may have been rolled back with the insert
            raise TransientError(f"cannot keep check results in {WAREHOUSE} ({TABLE}): {' '.join(str(exc).split())}") from exc
        except BaseException:
            _created.discard(url)
            raise


def _create(conn: object, url: str) -> None:
    """Create ``metrics.check_results`` once per process and database (under an advisory lock: workers race)."""
    with _lock:
        if url in _created:
            return
    execute = conn.execute  # type: ignore[attr-defined]
    execute("SELECT pg_advisory_xact_lock(hashtextextended('sluice:ddl:schema:metrics', 0))")
    execute("CREATE SCHEMA IF NOT EXISTS metrics")
    for statement in _DDL:
        execute(statement)
    with _lock:
        _created.add(url)


def prune_results(project: Project, state: StateStore | None, before: float) -> int:
    """Forget ``project``'s check results checked before ``before`` (epoch seconds), wherever they are kept (history
    retention); how many were removed. Raises TransientError when the warehouse cannot be reached."""
    url = warehouse_url(project)
    if url is None:
        return state.prune_check_results(project.name, before) if state is not None else 0
    import psycopg

    try:
        with psycopg.connect(libpq_url(url), connect_timeout=10) as conn:
            exists = conn.execute("SELECT to_regclass('metrics.check_results')").fetchone()
            if exists is None or exists[0] is None:
                return 0
            deleted = conn.execute(
                f"DELETE FROM {TABLE} WHERE project = %s AND checked_at < to_timestamp(%s)", (project.name, before)
            )
            return int(deleted.rowcount)
    except psycopg.OperationalError as exc:
        raise TransientError(f"cannot prune check results in {WAREHOUSE} ({TABLE}): {' '.join(str(exc).split())}") from exc


def load_results(
    project: Project, state: StateStore | None, *, run_id: str | None = None, object_id: int | None = None, limit: int = 100
) -> list[CheckResult]:
    """Kept results of ``project`` (one run's, one object's), newest first, from wherever they are kept."""
    url = warehouse_url(project)
    if url is None:
        return state.check_results(project.name, run_id=run_id, object_id=object_id, limit=limit) if state else []
    import psycopg

    columns = ", ".join("extract(epoch from checked_at)::float8" if c == "checked_at" else f'"{c}"' for c in CHECK_COLUMNS)
    try:
        conn = psycopg.connect(libpq_url(url), connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise TransientError(f"cannot read check results from {WAREHOUSE} ({TABLE}): {' '.join(str(exc).split())}") from exc
    with conn:
        exists = conn.execute("SELECT to_regclass('metrics.check_results')").fetchone()
        if exists is None or exists[0] is None:
            return []
        rows = conn.execute(
            f"SELECT {columns} FROM {TABLE} WHERE project = %s AND (%s::text IS NULL OR run_id = %s) "
            "AND (%s::bigint IS NULL OR object_id = %s) ORDER BY checked_at DESC LIMIT %s",
            (project.name, run_id, run_id, object_id, object_id, limit),
        ).fetchall()
    return [CheckResult(**dict(zip(CHECK_COLUMNS, row, strict=True))) for row in rows]
