"""``sluice validate --live`` for syncs (``cdc/preflight.py``) against the real MariaDB and PostgreSQL: each table
problem at the line of the ``tables:``, ``rename:`` or ``columns:`` entry that caused it, not the ``tables:`` key's."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.servers_fixtures import mysql_connect

from sluice.cdc.preflight import live_problems
from sluice.project.load import parse_project

pytestmark = [pytest.mark.mysql, pytest.mark.postgres]
SRC = Path(__file__).resolve().parents[2] / "src"


def sluice_validate_live(folder: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    command = [sys.executable, "-m", "sluice", "validate", str(folder), "--live"]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)


def test_validate_live_points_at_the_entry_at_fault_of_a_mariadb_source(
    mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    conn = mysql_connect(mysql_db_url)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE emp (id INT PRIMARY KEY, name VARCHAR(40), ssn VARCHAR(11))")
            cur.execute("CREATE TABLE dept (id INT PRIMARY KEY, name VARCHAR(40))")
            cur.execute("CREATE TABLE nokey_log (a INT)")
    finally:
        conn.close()
    name = f"sync_{uuid.uuid4().hex[:8]}"
    lines = [
        "connections:",  # 1
        f"  my: {mysql_db_url}",
        f"  pg: {pg_db_url}",
        "syncs:",
        f"  - name: {name}",  # 5
        "    source: my",
        "    target: pg",
        "    tables:",
        "      - emp",
        "      - missing_table",  # 10: matches nothing
        "      - dept",
        "      - 'nokey_*'",  # 12: finds a table without a primary key
        "    rename:",
        "      emp: staff",
        "      ghost: phantom",  # 15: names no synced table
        "    columns:",
        "      emp:",
        "        drop: [ssn]",
        "        mask:",
        "          - name",
        "          - salary",  # 21: emp has no such column
        "      dept: {drop: [id]}",  # 22: drops a key column
    ]
    (tmp_path / "sluice.yaml").write_text("\n".join(lines) + "\n")
    done = sluice_validate_live(tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    where = str(tmp_path / "sluice.yaml")
    reported = [line.removeprefix("  - ") for line in done.stderr.splitlines() if line.startswith("  - ")]
    assert [line.split(": ", 1)[0] for line in reported] == [f"{where}:{n}" for n in (10, 12, 15, 21, 22)], done.stderr
    assert "tables entry 'missing_table' matches no table of the source" in reported[0]
    assert f"sync '{name}': table {mysql_db_url.rsplit('/', 1)[1]}.nokey_log has no primary key" in reported[1]
    assert "rename names 'ghost', which is not one of the synced tables" in reported[2]
    assert "columns mask names unknown column 'salary'" in reported[3]
    assert "columns drop names key column 'id'" in reported[4]


def test_live_problems_of_a_postgresql_source_are_at_their_entries(mysql_db_url: str, pg_db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(pg_db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.emp (id int PRIMARY KEY, name text)")
        conn.execute("CREATE TABLE public.audit_trail (at timestamptz, what text)")
    name = f"sync_{uuid.uuid4().hex[:8]}"
    lines = [
        "connections:",  # 1
        f"  pg: {pg_db_url}",
        f"  my: {mysql_db_url}",
        "syncs:",
        f"  - name: {name}",  # 5
        "    source: pg",
        "    target: my",
        "    tables:",
        "      - emp",
        "      - 'public.audit_*'",  # 10: finds a table without a primary key
        "      - nothing_here",  # 11: matches nothing
    ]
    (tmp_path / "sluice.yaml").write_text("\n".join(lines) + "\n")
    project, problems = parse_project(str(tmp_path))
    assert project is not None and not problems, problems
    found: list[Any] = live_problems(project.syncs[0])
    assert [(p.line, p.message.split(": ", 1)[1].split(";")[0]) for p in found] == [
        (10, "table public.audit_trail has no primary key"),
        (11, "tables entry 'nothing_here' matches no table of the source (tables: public.audit_trail, public.emp)"),
    ], found
