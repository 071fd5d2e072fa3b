"""``sluice sync`` end to end (MariaDB -> PostgreSQL): ``snapshot: initial_only`` applies the snapshot and exits in
every process layout, and zero dates written as NULL are counted in ``sluice sync status``."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.cdc.test_sync_e2e import SRC, equal, my, pg, project, sluice, sync_name

pytestmark = [pytest.mark.mysql, pytest.mark.postgres]
__all__ = ["my", "pg"]  # the fixtures of test_sync_e2e (MariaDB with emp and dept, PostgreSQL), used by name
EXIT_WITHIN_S = 180
"""A run that has not exited by then never will (generous for a loaded machine; no timing is asserted)."""


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "300"}


def run_to_end(*args: str) -> subprocess.CompletedProcess[str]:
    """``sluice ARGS`` run to its end; fails the test when it does not exit by itself."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "sluice", *args], capture_output=True, text=True, env=env(), timeout=EXIT_WITHIN_S
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"'sluice {' '.join(args)}' did not exit after the snapshot:\n{exc.stdout!r}\n{exc.stderr!r}")


def initial_only_project(tmp_path: Path, mysql_db_url: str, pg_db_url: str) -> Path:
    return project(
        tmp_path,
        f"connections:\n  my: {mysql_db_url}\n  pg: {pg_db_url}\n"
        f"syncs:\n  - {{name: {sync_name()}, source: my, target: pg, tables: [emp, dept], snapshot: initial_only}}\n",
    )


@pytest.mark.parametrize("processes", ["1", "2"])
def test_initial_only_applies_the_snapshot_then_exits(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path, processes: str
) -> None:
    folder = initial_only_project(tmp_path, mysql_db_url, pg_db_url)
    done = run_to_end("sync", str(folder), "--processes", processes)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stopped: 600 row changes applied, 0 table(s) in error" in done.stdout, done.stdout
    assert equal(my, pg)
    status = json.loads(sluice("sync", "status", str(folder), "--json").stdout)
    assert status["state"] == "stopped" and not status.get("gone"), status


@pytest.mark.kafka
def test_initial_only_with_capture_and_apply_apart_on_kafka_both_exit(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, kafka_ns_url: str, tmp_path: Path
) -> None:
    """``--role apply`` (started first) waits for the snapshot, applies it and exits; ``--role capture`` exits once
    the snapshot is on the bus."""
    folder = initial_only_project(tmp_path, mysql_db_url, pg_db_url)
    command = [sys.executable, "-m", "sluice", "sync", str(folder), "--bus", kafka_ns_url, "--role"]
    apply = subprocess.Popen([*command, "apply"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        capture = run_to_end("sync", str(folder), "--bus", kafka_ns_url, "--role", "capture")
        assert capture.returncode == 0, capture.stdout + capture.stderr
        assert "capture of sync" in capture.stdout and "600 row changes captured" in capture.stdout, capture.stdout
        try:
            out, err = apply.communicate(timeout=EXIT_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail("'sluice sync --role apply' did not exit after applying the snapshot")
    finally:
        if apply.poll() is None:
            apply.kill()
            apply.communicate()
    assert apply.returncode == 0, out + err
    assert "stopped: 600 row changes applied, 0 table(s) in error" in out, out
    assert equal(my, pg)


def invalid_dates(folder: Path) -> dict[str, int]:
    status = json.loads(sluice("sync", "status", str(folder), "--json").stdout)
    return {t["source_table"].split(".")[1]: t.get("invalid_dates", 0) for t in status["tables"]}


def test_zero_dates_of_snapshot_and_stream_are_counted_in_sync_status(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    with my.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute("CREATE TABLE dates (id INT PRIMARY KEY, d DATE, t DATETIME)")
        cur.execute("CREATE TABLE plain (id INT PRIMARY KEY, d DATE)")
        cur.execute("INSERT INTO dates VALUES (1, '0000-00-00', '0000-00-00 00:00:00'), (2, '2024-01-02', '2024-01-02 03:04:05')")
        cur.execute("INSERT INTO plain VALUES (1, '2024-01-02')")
    folder = project(
        tmp_path,
        f"connections:\n  my: {mysql_db_url}\n  pg: {pg_db_url}\n"
        f"syncs:\n  - {{name: {sync_name()}, source: my, target: pg, tables: [dates, plain]}}\n",
    )
    # The snapshot, capture in a child process: its count reaches the status the command merges.
    first = sluice("sync", str(folder), "--once", "--processes", "2")
    assert "2 invalid date(s) written as NULL" in first.stdout, first.stdout
    assert invalid_dates(folder) == {"dates": 2, "plain": 0}
    shown = sluice("sync", "status", str(folder)).stdout
    assert "invalid dates" in shown, shown
    # The stream, in one process (counts are per run).
    with my.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute("INSERT INTO dates VALUES (3, '0000-00-00', '2024-00-10 00:00:00'), (4, '2024-05-06', '0000-00-00 00:00:00')")
    second = sluice("sync", str(folder), "--once", "--processes", "1")
    assert "3 invalid date(s) written as NULL" in second.stdout, second.stdout
    assert invalid_dates(folder) == {"dates": 3, "plain": 0}
    rows = pg.execute("SELECT id, d, t FROM public.dates ORDER BY id").fetchall()
    assert rows == [
        (1, None, None),
        (2, dt.date(2024, 1, 2), dt.datetime(2024, 1, 2, 3, 4, 5)),
        (3, None, None),
        (4, dt.date(2024, 5, 6), None),
    ]
    # Only what is written counts: an update's after image (not its before image), nothing of a delete.
    with my.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute("UPDATE dates SET t = '2024-02-03 00:00:00' WHERE id = 1")  # before: 2 zero dates, after: 1
        cur.execute("DELETE FROM dates WHERE id = 3")  # its before image: 2
    third = sluice("sync", str(folder), "--once", "--processes", "1")
    assert "1 invalid date(s) written as NULL" in third.stdout, third.stdout
    assert invalid_dates(folder) == {"dates": 1, "plain": 0}
