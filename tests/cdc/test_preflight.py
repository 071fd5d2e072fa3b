"""``sluice validate --live`` for syncs (``cdc/preflight.py``) against the real MariaDB and PostgreSQL: each table
problem at the line of the ``tables:``, ``rename:`` or ``columns:`` entry that caused it, not the ``tables:`` key's;
``sluice sync`` and ``sluice serve --sync`` refusing to start on the same problems, reported the same way; an
``exclude:`` entry that leaves nothing out, a note."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.servers_fixtures import mysql_execute

from helpers import free_port
from sluice.cdc.preflight import live_problems
from sluice.project.load import parse_project

pytestmark = [pytest.mark.mysql, pytest.mark.postgres]
SRC = Path(__file__).resolve().parents[2] / "src"


def sluice(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    command = [sys.executable, "-m", "sluice", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, check=False)


def sluice_validate_live(folder: Path) -> subprocess.CompletedProcess[str]:
    return sluice("validate", str(folder), "--live")


def mariadb_to_postgresql(name: str, mysql_db_url: str, pg_db_url: str, *ddl: str) -> list[str]:
    """Lines 1 to 7 of a project whose sync ``name`` copies MariaDB to PostgreSQL, up to its ``target:``; runs
    ``ddl`` in the MariaDB database first."""
    for statement in ddl:
        mysql_execute(mysql_db_url, statement)
    return [
        "connections:",  # 1
        f"  my: {mysql_db_url}",
        f"  pg: {pg_db_url}",
        "syncs:",
        f"  - name: {name}",  # 5
        "    source: my",
        "    target: pg",
    ]


FAULTS = (10, 12, 15, 21, 22)
"""The lines of :func:`faulty_project`'s entries at fault."""


def faulty_project(mysql_db_url: str, pg_db_url: str, folder: Path) -> str:
    """A sync from MariaDB to PostgreSQL with a problem at each line of :data:`FAULTS`; its name."""
    name = f"sync_{uuid.uuid4().hex[:8]}"
    head = mariadb_to_postgresql(
        name,
        mysql_db_url,
        pg_db_url,
        "CREATE TABLE emp (id INT PRIMARY KEY, name VARCHAR(40), ssn VARCHAR(11))",
        "CREATE TABLE dept (id INT PRIMARY KEY, name VARCHAR(40))",
        "CREATE TABLE nokey_log (a INT)",
    )
    lines = [
        *head,
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
    (folder / "sluice.yaml").write_text("\n".join(lines) + "\n")
    return name


def assert_each_fault_at_its_line(done: subprocess.CompletedProcess[str], folder: Path, name: str, db: str) -> None:
    """``done`` failed as ``sluice validate --live`` fails on :func:`faulty_project`: exit 2, one line per problem at
    its line, nothing else."""
    assert done.returncode == 2, done.stdout + done.stderr
    where = str(folder / "sluice.yaml")
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {len(FAULTS)} problems in the project:"], done.stderr
    reported = [line.removeprefix("  - ") for line in done.stderr.splitlines() if line.startswith("  - ")]
    assert [line.split(": ", 1)[0] for line in reported] == [f"{where}:{n}" for n in FAULTS], done.stderr
    assert "tables entry 'missing_table' matches no table of the source" in reported[0]
    assert f"sync '{name}': table {db}.nokey_log has no primary key" in reported[1]
    assert "rename names 'ghost', which is not one of the synced tables" in reported[2]
    assert "columns mask names unknown column 'salary'" in reported[3]
    assert "columns drop names key column 'id'" in reported[4]


def test_validate_live_points_at_the_entry_at_fault_of_a_mariadb_source(
    mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    name = faulty_project(mysql_db_url, pg_db_url, tmp_path)
    assert_each_fault_at_its_line(sluice_validate_live(tmp_path), tmp_path, name, mysql_db_url.rsplit("/", 1)[1])


def test_sync_refuses_to_start_with_each_problem_at_its_line_as_validate_live_says(
    mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    """``sluice sync`` (its capture in a child process, which must not start) reports what ``validate --live`` does,
    in its format, before anything starts: no target table created. It was one line joined by "; " without place."""
    name = faulty_project(mysql_db_url, pg_db_url, tmp_path)
    done = sluice("sync", str(tmp_path), "--once", "--processes", "2")
    assert_each_fault_at_its_line(done, tmp_path, name, mysql_db_url.rsplit("/", 1)[1])
    assert "capture in process" not in done.stdout, done.stdout
    with psycopg.connect(pg_db_url) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").fetchone() == (0,)


def test_serve_refuses_a_hosted_sync_with_each_problem_at_its_line(mysql_db_url: str, pg_db_url: str, tmp_path: Path) -> None:
    """``sluice serve --sync NAME`` checks the sync as ``sluice sync`` does before it serves (the sync failed in
    its thread after the server started, logged with a traceback, the problems joined on one line)."""
    name = faulty_project(mysql_db_url, pg_db_url, tmp_path)
    done = sluice("serve", str(tmp_path), "--port", str(free_port()), "--sync", name, "--no-scheduler", timeout=60)
    assert_each_fault_at_its_line(done, tmp_path, name, mysql_db_url.rsplit("/", 1)[1])
    assert "serving project" not in done.stderr, done.stderr


def test_an_exclude_pattern_that_leaves_nothing_out_is_a_note_at_its_line(
    mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    """Not a problem (the sync runs), but usually a typo: ``validate --live`` and ``sluice sync`` say it once, at
    the ``exclude:`` item's line. No check said it."""
    name = f"sync_{uuid.uuid4().hex[:8]}"
    head = mariadb_to_postgresql(
        name,
        mysql_db_url,
        pg_db_url,
        "CREATE TABLE emp (id INT PRIMARY KEY, name VARCHAR(40))",
        "CREATE TABLE emp_archive (id INT PRIMARY KEY, name VARCHAR(40))",
        "CREATE TABLE other (id INT PRIMARY KEY)",
    )
    lines = [
        *head,
        "    tables: ['emp*']",
        "    exclude:",
        "      - emp_archive",  # 10: leaves emp_archive out
        "      - emp_archve",  # 11: a typo, leaves nothing out
        "      - other",  # 12: a table tables: does not select
    ]
    (tmp_path / "sluice.yaml").write_text("\n".join(lines) + "\n")
    where = str(tmp_path / "sluice.yaml")
    db = mysql_db_url.rsplit("/", 1)[1]
    expected = [
        f"note: {where}:{line}: sync '{name}': exclude pattern '{pattern}' matches no table that tables: selects "
        f"({db}.emp, {db}.emp_archive), so it leaves nothing out; fix the name or pattern, or remove it"
        for line, pattern in ((11, "emp_archve"), (12, "other"))
    ]
    validate = sluice_validate_live(tmp_path)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert [line for line in validate.stdout.splitlines() if line.startswith("note: ")] == expected, validate.stdout
    run = sluice("sync", str(tmp_path), "--once")
    assert run.returncode == 0, run.stdout + run.stderr
    assert [line for line in run.stderr.splitlines() if line.startswith("note: ")] == expected, run.stderr
    with psycopg.connect(pg_db_url) as conn:
        found = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").fetchall()
    assert found == [("emp",)]


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


def test_a_wrong_password_is_at_the_key_naming_the_connection_in_words(mysql_db_url: str, pg_db_url: str, tmp_path: Path) -> None:
    """Not the driver's ``(1045, "...")`` tuple at the sync's line (a trial found it so)."""
    scheme, rest = mysql_db_url.split("://", 1)
    userinfo, hostpart = rest.rsplit("@", 1)
    wrong = f"{scheme}://{userinfo.split(':', 1)[0]}:not-the-password@{hostpart}"
    (tmp_path / "sluice.yaml").write_text(
        f"connections:\n  my: {wrong}\n  pg: {pg_db_url}\nsyncs:\n  - name: sync_{uuid.uuid4().hex[:8]}\n"
        "    source: my\n    target: pg\n    tables: [emp]\n"
    )
    done = sluice_validate_live(tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    [problem] = [line for line in done.stderr.splitlines() if line.startswith("  - ")]
    assert problem.startswith(f"  - {tmp_path / 'sluice.yaml'}:6: sync 'sync_"), problem  # line 6: source: my
    assert "cannot connect to my: Access denied for user" in problem and "(MySQL error 1045)" in problem, problem
    assert problem.endswith("check the host, port, user and password of connection 'my'"), problem
