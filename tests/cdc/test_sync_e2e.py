"""``sluice sync`` end to end against the real MariaDB and PostgreSQL, on the embedded bus and on Kafka."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from prometheus_client import REGISTRY
from tests.servers_fixtures import mysql_connect

from helpers import free_port, scrape
from sluice.bus.base import Bus
from sluice.bus.embedded import EmbeddedBus
from sluice.bus.registry import open_bus
from sluice.cdc.base import PositionLost
from sluice.cdc.config import SyncSettings
from sluice.cdc.runtime import SyncRuntime
from sluice.cdc.status import SyncStatus

pytestmark = [pytest.mark.mysql, pytest.mark.postgres]
SRC = Path(__file__).resolve().parents[2] / "src"
TABLES = ("emp", "dept")
DDL = "CREATE TABLE {t} (id INT PRIMARY KEY, name VARCHAR(40), n INT, amount DECIMAL(10,2))"


def sync_name() -> str:
    return f"sync_{uuid.uuid4().hex[:8]}"


def fill_tables(conn: Any) -> None:
    """Create ``TABLES`` with 300 rows each in ``conn``'s database."""
    with conn.cursor() as cur:
        for table in TABLES:
            cur.execute(DDL.format(t=table))
            values = ", ".join(f"({i}, 'n{i}', {i}, {i}.25)" for i in range(300))
            cur.execute(f"INSERT INTO {table} VALUES {values}")


@pytest.fixture
def my(mysql_db_url: str) -> Iterator[Any]:
    conn = mysql_connect(mysql_db_url)
    fill_tables(conn)
    yield conn
    conn.close()


@pytest.fixture
def pg(pg_db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_db_url, autocommit=True) as conn:
        yield conn


def rows_my(conn: Any, table: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, name, n, amount FROM {table} ORDER BY id")
        return [tuple(r) for r in cur.fetchall()]


def rows_pg(conn: psycopg.Connection[Any], table: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(f"SELECT id, name, n, amount FROM {table} ORDER BY id").fetchall()]


def writer(url: str, stop: threading.Event, seed: int) -> None:
    """Inserts, updates and deletes on both tables until ``stop``."""
    conn = mysql_connect(url)
    rng = random.Random(seed)
    try:
        with conn.cursor() as cur:
            while not stop.is_set():
                table, key = rng.choice(TABLES), rng.randrange(400)
                roll = rng.random()
                if roll < 0.2:
                    cur.execute(f"DELETE FROM {table} WHERE id = %s", (key,))
                elif roll < 0.6:
                    cur.execute(f"UPDATE {table} SET n = n + 1, name = %s WHERE id = %s", (f"u{rng.randrange(99)}", key))
                else:
                    cur.execute(
                        f"REPLACE INTO {table} VALUES (%s, %s, %s, %s)",
                        (key, f"i{key}", rng.randrange(1000), Decimal(rng.randrange(10**6)) / 100),
                    )
                time.sleep(0.001)
    finally:
        conn.close()


def embedded_bus(sync: SyncSettings, urls: dict[str, str], tmp_path: Path) -> contextlib.AbstractContextManager[Bus]:
    """An embedded bus in ``tmp_path`` (:func:`dropping`)."""
    return dropping(EmbeddedBus(str(tmp_path / "bus.db")), sync, urls, tmp_path)


@contextlib.contextmanager
def dropping(bus: Bus, sync: SyncSettings, urls: dict[str, str], tmp_path: Path) -> Iterator[Bus]:
    """``bus``; at the end ``sync``'s capture objects (slot, publication) are dropped from the sources, then the bus
    is closed."""
    try:
        yield bus
    finally:
        try:
            SyncRuntime(sync, urls, bus, tmp_path).drop()
        finally:
            bus.close()


def settings(name: str, **overrides: Any) -> SyncSettings:
    raw: dict[str, Any] = {"name": name, "source": "my", "target": "pg", "tables": list(TABLES), "chunk_rows": 100}
    raw.update(overrides)
    return msgspec.convert(raw, SyncSettings)


def wait_for(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.1)


def equal(my: Any, pg: psycopg.Connection[Any]) -> bool:
    try:
        return all(rows_my(my, t) == rows_pg(pg, f"public.{t}") for t in TABLES)
    except psycopg.errors.UndefinedTable:  # apply has not created it yet
        return False


def run_in_thread(rt: SyncRuntime) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(rt.run())
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def snapshot_and_stream_while_writing(
    bus: Bus, my: Any, pg: psycopg.Connection[Any], urls: dict[str, str], tmp: Path, sync: SyncSettings | None = None
) -> SyncStatus:
    """Run ``sync`` (default: :func:`settings`) while :func:`writer` writes, until the tables are equal; its last status."""
    stop = threading.Event()
    w = threading.Thread(target=writer, args=(urls["my"], stop, 7))
    w.start()
    sync = sync or settings(sync_name())
    rt = SyncRuntime(sync, urls, bus, tmp / ".sluice")
    thread, out = run_in_thread(rt)
    try:
        time.sleep(3.0)
    finally:
        stop.set()
        w.join()
    try:
        wait_for(lambda: equal(my, pg))
    finally:
        rt.stop()
        thread.join(30)
    assert not thread.is_alive(), "the runtime did not stop within 30 s"
    status: SyncStatus = out[0]
    assert not isinstance(status, Exception), status
    by_table = {t.source_table.split(".")[1]: t for t in status.tables}
    emp = by_table["emp"]
    assert emp.applied.get("snapshot", 0) > 0 and emp.applied.get("update", 0) > 0
    assert emp.snapshot_rows == emp.captured["snapshot"]
    # the Prometheus series of the sync (docs/metrics.md) moved with it, as the Grafana dashboard reads them
    labels = {"sync": sync.name, "table": emp.source_table}
    for operation in ("snapshot", "update"):
        applied = REGISTRY.get_sample_value("sluice_cdc_changes_applied_total", {**labels, "operation": operation})
        assert applied == emp.applied[operation], (operation, applied)
        captured = REGISTRY.get_sample_value("sluice_cdc_changes_captured_total", {**labels, "operation": operation})
        assert captured == emp.captured[operation], (operation, captured)
    assert REGISTRY.get_sample_value("sluice_cdc_snapshot_rows_total", labels) == emp.snapshot_rows
    assert REGISTRY.get_sample_value("sluice_cdc_snapshot_progress_ratio", labels) == 1.0
    assert REGISTRY.get_sample_value("sluice_cdc_table_stopped", labels) == 0.0
    return status


def test_snapshot_then_stream_while_writing_embedded(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    bus = EmbeddedBus(str(tmp_path / "bus.db"))
    try:
        snapshot_and_stream_while_writing(bus, my, pg, {"my": mysql_db_url, "pg": pg_db_url}, tmp_path)
    finally:
        bus.close()


@pytest.mark.kafka
def test_snapshot_then_stream_while_writing_kafka(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, kafka_ns_url: str, tmp_path: Path
) -> None:
    bus = open_bus(kafka_ns_url)
    try:
        snapshot_and_stream_while_writing(bus, my, pg, {"my": mysql_db_url, "pg": pg_db_url}, tmp_path)
    finally:
        bus.close()


def project(tmp_path: Path, body: str) -> Path:
    (tmp_path / "sluice.yaml").write_text(body)
    return tmp_path


def sluice(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, "-m", "sluice", *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def kill_9_while_writing(
    folder: Path, url: str, seed: int, rng: random.Random, after_kill: Callable[[], None] | None = None
) -> None:
    """Three runs of ``sluice sync folder``, each killed with SIGKILL after 1.5-3.5 s, while :func:`writer` (``seed``)
    writes to ``url``; ``after_kill`` runs after each kill."""
    stop = threading.Event()
    w = threading.Thread(target=writer, args=(url, stop, seed))
    w.start()
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    try:
        for _ in range(3):
            proc = subprocess.Popen(
                [sys.executable, "-m", "sluice", "sync", str(folder)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(1.5, 3.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            if after_kill is not None:
                after_kill()
    finally:
        stop.set()
        w.join()


def test_kill_9_at_random_moments_then_restart_converges(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    folder = project(
        tmp_path,
        f"connections:\n  my: {mysql_db_url}\n  pg: {pg_db_url}\n"
        f"syncs:\n  - {{name: {sync_name()}, source: my, target: pg, tables: [emp, dept], chunk_rows: 50, batch_rows: 200}}\n",
    )
    kill_9_while_writing(folder, mysql_db_url, 11, random.Random(5))
    done = sluice("sync", str(folder), "--once")
    assert "0 table(s) in error" in done.stdout
    assert equal(my, pg)
    status = sluice("sync", "status", str(folder), "--json")
    assert '"state":"stopped"' in status.stdout


def test_bad_configuration_fails_before_start(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    with my.cursor() as cur:
        cur.execute("CREATE TABLE nokey (a INT)")
    name = sync_name()
    folder = project(
        tmp_path,
        f"connections:\n  my: {mysql_db_url}\n  pg: {pg_db_url}\n"
        f"syncs:\n  - {{name: {name}, source: my, target: pg, tables: [emp, nokey, missing_table]}}\n",
    )
    db = mysql_db_url.rsplit("/", 1)[1]
    assert sluice("validate", str(folder)).returncode == 0  # the file alone is fine
    validate = sluice("validate", str(folder), "--live", check=False)
    assert validate.returncode == 2
    assert "'missing_table' matches no table" in validate.stderr and "nokey has no primary key" in validate.stderr
    run = sluice("sync", str(folder), "--once", check=False)
    where = folder / "sluice.yaml"
    assert run.returncode == 2 and run.stderr.splitlines() == [  # as validate --live says it (a flow list: one line)
        "error: 2 problems in the project:",
        f"  - {where}:5: sync '{name}': tables entry 'missing_table' matches no table of the source (tables: {db}.dept, "
        f"{db}.emp, {db}.nokey); fix the name or pattern",
        f"  - {where}:5: sync '{name}': table {db}.nokey has no primary key; add one, or set no_key: insert-only or "
        "full-row, or exclude the table",
    ], run.stderr
    assert pg.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'emp'").fetchone() == (0,)


def test_poison_row_goes_to_dead_letters_and_the_rest_flows(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    pg.execute("CREATE TABLE public.emp (id int PRIMARY KEY, name varchar(40), n int CHECK (n < 1000000), amount numeric(10,2))")
    bus = EmbeddedBus(str(tmp_path / "bus.db"))
    urls = {"my": mysql_db_url, "pg": pg_db_url}
    name = sync_name()
    try:
        SyncRuntime(settings(name, tables=["emp"]), urls, bus, tmp_path, once=True).run()
        with my.cursor() as cur:
            cur.execute("INSERT INTO emp VALUES (1000, 'bad', 5000000, 1), (1001, 'good', 1, 1)")
        status = SyncRuntime(settings(name, tables=["emp"]), urls, bus, tmp_path, once=True).run()
    finally:
        bus.close()
    assert status.tables[0].dead_letters == 1 and status.tables[0].state == "streaming"
    assert pg.execute("SELECT name FROM public.emp WHERE id IN (1000, 1001)").fetchall() == [("good",)]
    reason = pg.execute("SELECT reason FROM sluice_cdc.dead_letters").fetchall()
    assert len(reason) == 1 and "check" in reason[0][0].lower()


def test_schema_change_it_cannot_apply_stops_that_table_only(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    bus = EmbeddedBus(str(tmp_path / "bus.db"))
    urls = {"my": mysql_db_url, "pg": pg_db_url}
    name = sync_name()
    rt = SyncRuntime(settings(name), urls, bus, tmp_path)
    thread, out = run_in_thread(rt)
    try:
        wait_for(lambda: equal(my, pg))
        pg.execute("CREATE VIEW public.emp_view AS SELECT n FROM public.emp")  # PostgreSQL then refuses to alter emp.n
        with my.cursor() as cur:
            cur.execute("ALTER TABLE emp MODIFY n BIGINT")
            cur.execute("INSERT INTO emp VALUES (6000, 'after', 1, 1)")
            cur.execute("INSERT INTO dept VALUES (5000, 'flows', 1, 1)")
        wait_for(lambda: pg.execute("SELECT count(*) FROM public.dept WHERE id = 5000").fetchone() == (1,))
        wait_for(lambda: any(t.state == "error" for t in rt.state.tables.values()))
    finally:
        rt.stop()
        thread.join(30)
        bus.close()
    assert not thread.is_alive(), "the runtime did not stop within 30 s"
    status = out[0]
    by_table = {t.source_table.split(".")[1]: t for t in status.tables}
    assert by_table["emp"].state == "error", by_table["emp"]
    assert by_table["dept"].state == "streaming"
    assert pg.execute("SELECT name FROM public.dept WHERE id = 5000").fetchone() == ("flows",)


def test_lost_position_is_one_clear_error_then_resnapshot(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    """PostgreSQL -> MariaDB: the slot dropped while the sync was stopped."""
    pg.execute("CREATE TABLE public.src (id int PRIMARY KEY, name text)")
    pg.execute("INSERT INTO public.src SELECT g, 'v' || g FROM generate_series(1, 50) g")
    urls = {"pg": pg_db_url, "my": mysql_db_url}
    name = sync_name()
    sync = msgspec.convert({"name": name, "source": "pg", "target": "my", "tables": ["src"]}, SyncSettings)
    with embedded_bus(sync, urls, tmp_path) as bus:
        SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
        SyncRuntime(sync, urls, bus, tmp_path).drop()
        pg.execute("UPDATE public.src SET name = 'changed' WHERE id = 1")
        with pytest.raises(PositionLost, match="--resnapshot"):
            SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
        SyncRuntime(sync, urls, bus, tmp_path, once=True, resnapshot=True).run()
    with my.cursor() as cur:
        cur.execute("SELECT count(*), max(name = 'changed') FROM src")
        assert cur.fetchone() == (50, 1)


@pytest.mark.parametrize("source", ["my", "pg"])
def test_once_right_after_a_commit_applies_it(
    source: str, my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    """Each ``--once`` run applies the change committed just before it started, on its first try. A PostgreSQL
    source used to stop at ``pg_current_wal_lsn()``, the written WAL, which with ``synchronous_commit = off`` (the
    test server's) is behind a commit that returned: most such runs applied nothing until the next run."""
    urls = {"my": mysql_db_url, "pg": pg_db_url}
    if source == "pg":
        pg.execute("SET synchronous_commit = off")
        pg.execute("CREATE TABLE public.src (id int PRIMARY KEY, name text)")
        pg.execute("INSERT INTO public.src SELECT g, 'v' || g FROM generate_series(1, 50) g")
    table = "src" if source == "pg" else "emp"
    target = "my" if source == "pg" else "pg"
    sync = msgspec.convert({"name": sync_name(), "source": source, "target": target, "tables": [table]}, SyncSettings)
    with embedded_bus(sync, urls, tmp_path) as bus:
        SyncRuntime(sync, urls, bus, tmp_path, once=True).run()  # the snapshot
        for n in range(8):
            if source == "pg":
                pg.execute("UPDATE public.src SET name = %s WHERE id = 1", [f"changed {n}"])
            else:
                with my.cursor() as cur:
                    cur.execute("UPDATE emp SET name = %s WHERE id = 1", [f"changed {n}"])
            status = SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
            assert status.tables[0].applied == {"update": 1}, f"run {n} applied {status.tables[0].applied}"


@pytest.mark.parametrize("source", ["my", "pg"])
def test_a_restarted_sync_shows_its_stored_position_before_any_new_change(
    source: str, my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    """``sluice sync status`` of a restarted sync shows where the last run stopped (read from the target's positions
    table, either dialect), not a blank until the source changes again."""
    urls = {"my": mysql_db_url, "pg": pg_db_url}
    if source == "pg":
        pg.execute("CREATE TABLE public.src (id int PRIMARY KEY, name text)")
        pg.execute("INSERT INTO public.src SELECT g, 'v' || g FROM generate_series(1, 50) g")
    table = "src" if source == "pg" else "emp"
    target = "my" if source == "pg" else "pg"
    sync = msgspec.convert({"name": sync_name(), "source": source, "target": target, "tables": [table]}, SyncSettings)

    def run_once() -> tuple[str, dict[str, int]]:
        status = SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
        return status.tables[0].position, status.tables[0].applied

    with embedded_bus(sync, urls, tmp_path) as bus:
        run_once()  # the snapshot
        if source == "pg":
            pg.execute("UPDATE public.src SET name = 'changed' WHERE id = 1")
        else:
            with my.cursor() as cur:
                cur.execute("UPDATE emp SET name = 'changed' WHERE id = 1")
        streamed, applied = run_once()
        assert applied == {"update": 1} and streamed, "the run that applied the change shows its position"
        assert run_once() == (streamed, {})  # nothing new: the stored position, not ""


@pytest.mark.parametrize(("policy", "winner"), [("source-wins", "my"), ("target-wins", "pg"), ("newer-wins", "pg")])
def test_both_ways_no_echo_and_conflicts(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path, policy: str, winner: str
) -> None:
    urls = {"my": mysql_db_url, "pg": pg_db_url}
    name = sync_name()
    sync = settings(name, tables=["emp"], direction="both", conflicts=policy)
    with embedded_bus(sync, urls, tmp_path) as bus:
        SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
        with my.cursor() as cur:
            cur.execute("UPDATE emp SET name = 'my only' WHERE id = 1")
            cur.execute("UPDATE emp SET name = 'my version' WHERE id = 2")
        time.sleep(1.1)  # MariaDB commit times have whole seconds: the PostgreSQL change is newer
        pg.execute("UPDATE public.emp SET name = 'pg only' WHERE id = 3")
        pg.execute("UPDATE public.emp SET name = 'pg version' WHERE id = 2")
        status = SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
        # Resuming from the checkpoints reads what the previous run applied on each side: all of it echo.
        again = SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
    assert rows_my(my, "emp") == rows_pg(pg, "public.emp")
    names = {r[0]: r[1] for r in rows_pg(pg, "public.emp") if r[0] in (1, 2, 3)}
    assert names == {1: "my only", 2: f"{winner} version", 3: "pg only"}
    assert sum(t.conflicts for t in status.tables) >= 1
    # No echo: each capture saw its own two updates only, not what the sync wrote into its database
    # (the apply transactions hold SAVEPOINTs, which MariaDB logs inside the transaction).
    captured = {t.direction: t.captured for t in status.tables}
    assert captured == {"pg -> my": {"update": 2}, "my -> pg": {"update": 2}}, captured
    assert [t.captured for t in again.tables] == [{}, {}], again.tables


def capture_children(pid: int) -> list[int]:
    """The children of ``pid`` running ``sluice sync run ... --role capture`` (not a short-lived helper a library
    started, such as a command asked for the machine's address)."""
    found = []
    for child in children_of(pid):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        role = argv.index(b"--role") + 1 if b"--role" in argv else len(argv)
        if argv[role : role + 1] == [b"capture"]:
            found.append(child)
    return found


def children_of(pid: int) -> list[int]:
    """The pids of ``pid``'s children (Linux ``/proc/<pid>/task/*/children``)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def test_one_way_sync_captures_in_a_child_that_dies_with_its_parent(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    folder = project(
        tmp_path,
        f"connections:\n  my: {mysql_db_url}\n  pg: {pg_db_url}\n"
        f"syncs:\n  - {{name: {sync_name()}, source: my, target: pg, tables: [emp, dept]}}\n",
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-m", "sluice", "sync", str(folder)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "capture in process" in first, first
        wait_for(lambda: bool(children_of(proc.pid)), 30)
        (child,) = children_of(proc.pid)
        wait_for(lambda: equal(my, pg), 60)  # the snapshot went through the child and the parent's apply
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    wait_for(lambda: not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2], 30)
    # The child stopped cleanly (its file says stopped), the parent's file still says streaming: the sync is gone.
    shown = sluice("sync", "status", str(folder)).stdout
    assert f"not running (pid {proc.pid} gone;" in shown, shown
    with my.cursor() as cur:
        cur.execute("UPDATE emp SET n = n + 1")
    done = sluice("sync", str(folder), "--once", "--processes", "1")
    assert "capture in process" not in done.stdout
    assert equal(my, pg)
    # The other way round: a capture child that dies stops its parent with an error (a supervisor restarts both).
    proc = subprocess.Popen([sys.executable, "-m", "sluice", "sync", str(folder)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: bool(capture_children(proc.pid)), 30)
        os.kill(capture_children(proc.pid)[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    assert "the capture process exited with status -9" in err


def source_emp(source: str, my: Any, pg: psycopg.Connection[Any]) -> None:
    """With ``source`` pg: ``public.emp`` on PostgreSQL with 300 rows (ids 1-300), MariaDB's ``emp`` emptied (the
    ``my`` fixture's 300 rows, ids 0-299, are the source's otherwise)."""
    if source == "pg":
        pg.execute(DDL.format(t="public.emp"))
        pg.execute("INSERT INTO public.emp SELECT g, 'p' || g, g, g FROM generate_series(1, 300) g")
        with my.cursor() as cur:
            cur.execute("DELETE FROM emp")


@pytest.mark.parametrize("source", ["my", "pg"])
@pytest.mark.parametrize("how", ["resnapshot", "resync"])
def test_both_ways_resnapshot_and_resync_keep_the_source_rows(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path, how: str, source: str
) -> None:
    """Emptying the target for a new copy is the sync's own write: the target's capture skips it (it used to
    capture the TRUNCATE and apply it to the source, emptying both sides)."""
    from sluice.cdc.state import request_resync

    urls = {"my": mysql_db_url, "pg": pg_db_url}
    name = sync_name()
    target = "pg" if source == "my" else "my"
    source_emp(source, my, pg)
    sync = settings(name, source=source, target=target, tables=["emp"], direction="both", conflicts="newer-wins")
    with embedded_bus(sync, urls, tmp_path) as bus:
        SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
        assert len(rows_pg(pg, "public.emp")) == len(rows_my(my, "emp")) == 300
        if how == "resync":
            request_resync(tmp_path, name, f"{urlsplit_db(mysql_db_url) if source == 'my' else 'public'}.emp")
        status = SyncRuntime(sync, urls, bus, tmp_path, once=True, resnapshot=how == "resnapshot").run()
        # A later run reads what this one wrote on each side: all of it the sync's own, nothing echoes.
        again = SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
    assert len(rows_my(my, "emp")) == 300
    assert rows_my(my, "emp") == rows_pg(pg, "public.emp")
    captured = {t.direction: t.captured for t in status.tables}
    assert captured[f"{target} -> {source}"] == {}, captured
    assert captured[f"{source} -> {target}"] == {"snapshot": 300}, captured
    assert [t.captured for t in again.tables] == [{}, {}], again.tables


def bus_of(
    kind: str, sync: SyncSettings, urls: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> contextlib.AbstractContextManager[Bus]:
    """An embedded bus (:func:`embedded_bus`) or one on Kafka in a namespace of its own (:func:`dropping`)."""
    if kind == "embedded":
        return embedded_bus(sync, urls, tmp_path)
    return dropping(open_bus(request.getfixturevalue("kafka_ns_url")), sync, urls, tmp_path)


def lose_position(side: str, sync: SyncSettings, urls: dict[str, str], bus: Bus, tmp_path: Path) -> None:
    """The position ``side``'s capture resumes from is gone, as after a purge: a PostgreSQL side's slot is dropped;
    a MariaDB side's checkpoint is moved into the binlog file ``binlog.000000``, which no server has (numbering starts
    at 1; ``binlog.000001`` is still there on a fresh server). The shared server's binlogs are left alone: other
    tests' captures read them."""
    from sluice.cdc.checkpoint import write_heartbeat
    from sluice.cdc.events import Heartbeat, Source

    if side == "pg":
        runtime = SyncRuntime(sync, urls, bus, tmp_path)
        try:
            runtime.capture_of("pg").drop()
        finally:
            runtime.close()
        return
    purged = Source("", side, [0, 4, 0], "binlog.000000:4", time.time_ns() // 1000, origin=f"{sync.name}/{side}")
    write_heartbeat(bus, sync.name, side, Heartbeat(purged))


@pytest.mark.parametrize(
    ("source", "how", "bus_kind"),
    [
        ("my", "resnapshot", "embedded"),
        pytest.param("my", "resnapshot", "kafka", marks=pytest.mark.kafka),
        ("pg", "resnapshot", "embedded"),
        ("my", "resync", "embedded"),
        pytest.param("my", "resync", "kafka", marks=pytest.mark.kafka),
        pytest.param("my", "resnapshot", "kafka-partitions", marks=pytest.mark.kafka),
        pytest.param("pg", "resync", "kafka-partitions", marks=pytest.mark.kafka),
        ("pg", "resync", "embedded"),
        ("my", "lost", "embedded"),
        ("pg", "lost", "embedded"),
        ("my", "when_needed", "embedded"),
        ("pg", "when_needed", "embedded"),
    ],
)
def test_both_ways_copy_replaces_a_target_change_made_while_stopped(
    my: Any,
    pg: psycopg.Connection[Any],
    mysql_db_url: str,
    pg_db_url: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    source: str,
    how: str,
    bus_kind: str,
) -> None:
    """A trial's finding: with the sync stopped, a row changed on the target side; ``--resnapshot`` (or a resync of
    the table, or ``snapshot: when_needed`` after the declared source's position was lost) copied the source's row
    over the target, and then the target side's capture applied the old change to the source: the sides stayed
    different for good. Now the copy replaces that change on both sides, and the target side streams afterwards."""
    from sluice.cdc.state import request_resync

    urls = {"my": mysql_db_url, "pg": pg_db_url}
    target = "pg" if source == "my" else "my"
    source_emp(source, my, pg)
    snapshot = "when_needed" if how == "when_needed" else "initial"
    partitions = 2 if bus_kind == "kafka-partitions" else 1  # resets by markers on the bus, applied past a barrier
    sync = settings(
        sync_name(), source=source, target=target, tables=["emp"], direction="both", snapshot=snapshot, partitions=partitions
    )

    def on_target(statement: str) -> None:
        if target == "pg":
            pg.execute(statement.replace("emp", "public.emp"))
        else:
            with my.cursor() as cur:
                cur.execute(statement)

    with bus_of(bus_kind, sync, urls, tmp_path, request) as bus:
        SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
        original = rows_my(my, "emp")
        assert rows_pg(pg, "public.emp") == original and len(original) == 300
        on_target("UPDATE emp SET name = 'target-while-stopped' WHERE id = 10")  # the sync is stopped
        if how in ("lost", "when_needed"):
            lose_position(source, sync, urls, bus, tmp_path)
        if how == "lost":
            with pytest.raises(PositionLost, match="--resnapshot"):
                SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
        if how == "resync":
            request_resync(tmp_path, sync.name, f"{urlsplit_db(mysql_db_url) if source == 'my' else 'public'}.emp")
        SyncRuntime(sync, urls, bus, tmp_path, once=True, resnapshot=how in ("resnapshot", "lost")).run()
        assert rows_my(my, "emp") == rows_pg(pg, "public.emp") == original
        again = SyncRuntime(sync, urls, bus, tmp_path, once=True).run()  # nothing left to apply either way
        assert rows_my(my, "emp") == rows_pg(pg, "public.emp") == original
        assert [t.applied for t in again.tables] == [{}, {}], again.tables
        # The target side streams on: a change made after the copy reaches the source.
        on_target("UPDATE emp SET name = 'target-after' WHERE id = 11")
        SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
    assert rows_my(my, "emp") == rows_pg(pg, "public.emp")
    names = {row[0]: row[1] for row in rows_my(my, "emp")}
    assert (names[10], names[11]) == ({row[0]: row[1] for row in original}[10], "target-after")


def test_both_ways_resync_while_the_target_side_writes_converges(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    """A resync of a running both-ways sync while the target side updates rows and inserts new keys: once the
    writes stop, both sides hold the same rows (a target write made just before the table was emptied reaches the
    source before the copy reads it, and comes back with the copy)."""
    from sluice.cdc.state import request_resync

    urls = {"my": mysql_db_url, "pg": pg_db_url}
    sync = settings(sync_name(), tables=["emp"], direction="both")
    stop = threading.Event()

    def target_writer() -> None:
        rng, new_key = random.Random(3), 1000
        with psycopg.connect(pg_db_url, autocommit=True) as conn:
            while not stop.is_set():
                if rng.random() < 0.7:
                    conn.execute(
                        "UPDATE public.emp SET n = n + 1, name = %s WHERE id = %s", [f"t{rng.randrange(99)}", rng.randrange(300)]
                    )
                else:
                    conn.execute("INSERT INTO public.emp VALUES (%s, 'new', 0, 0)", [new_key])
                    new_key += 1
                time.sleep(0.002)

    with embedded_bus(sync, urls, tmp_path) as bus:
        SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
        rt = SyncRuntime(sync, urls, bus, tmp_path)
        thread, out = run_in_thread(rt)
        w = threading.Thread(target=target_writer)
        try:
            w.start()
            time.sleep(1.0)
            request_resync(tmp_path, sync.name, f"{urlsplit_db(mysql_db_url)}.emp")
            time.sleep(3.0)
        finally:
            stop.set()
            w.join()
        try:
            wait_for(lambda: rows_my(my, "emp") == rows_pg(pg, "public.emp"), 60)
        finally:
            rt.stop()
            thread.join(30)
    assert not isinstance(out[0], Exception), out[0]
    assert len(rows_my(my, "emp")) > 300


def test_both_ways_resnapshot_after_a_stopped_target_change_verifies_equal(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    """The trial's own steps, on the command line: MariaDB (declared source) <-> PostgreSQL, a change on PostgreSQL
    while the sync is stopped, ``sluice sync . --once --resnapshot``, then ``sluice sync verify`` says EQUAL (it said
    DIFFERENT for good: PostgreSQL had the copy, MariaDB the PostgreSQL change)."""
    name = sync_name()
    folder = project(
        tmp_path,
        f"connections:\n  my: {mysql_db_url}\n  pg: {pg_db_url}\n"
        f"syncs:\n  - {{name: {name}, source: my, target: pg, direction: both, tables: [emp]}}\n",
    )
    try:
        sluice("sync", str(folder), "--once")
        pg.execute("UPDATE public.emp SET name = 'pg-while-stopped' WHERE id = 10")
        sluice("sync", str(folder), "--once", "--resnapshot")
        verified = sluice("sync", "verify", str(folder), check=False)
        assert verified.returncode == 0 and "DIFFERENT" not in verified.stdout, verified.stdout + verified.stderr
        assert sluice("sync", str(folder), "--once").returncode == 0
        assert sluice("sync", "verify", str(folder), check=False).returncode == 0
    finally:
        sluice("sync", "drop", str(folder), check=False)
    assert rows_my(my, "emp") == rows_pg(pg, "public.emp")
    assert rows_pg(pg, "public.emp")[10][:2] == (10, "n10")


def urlsplit_db(url: str) -> str:
    """The database of a ``mysql://.../db`` URL."""
    return url.rsplit("/", 1)[1]


def test_primary_key_changed_at_the_source_then_resync_gives_the_target_the_new_key(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    """The key change stops the table; the resync gives the target the new key (it kept the old one, whose
    ON CONFLICT then crashed every start of the sync) and the table streams again."""
    from sluice.cdc.state import request_resync

    urls = {"my": mysql_db_url, "pg": pg_db_url}
    name = sync_name()
    sync = settings(name)
    with embedded_bus(sync, urls, tmp_path) as bus:
        SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
        with my.cursor() as cur:
            cur.execute("ALTER TABLE emp DROP PRIMARY KEY, ADD PRIMARY KEY (id, n)")
            cur.execute("INSERT INTO emp VALUES (1, 'same id', 7, 1)")
        stopped = SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
        assert {t.source_table.split(".")[1]: t.state for t in stopped.tables} == {"emp": "error", "dept": "streaming"}
        request_resync(tmp_path, name, f"{urlsplit_db(mysql_db_url)}.emp")
        status = SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
        with my.cursor() as cur:
            cur.execute("INSERT INTO emp VALUES (1, 'third', 8, 1)")
        again = SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
    assert all(t.state == "streaming" for t in status.tables + again.tables), status.tables
    key = pg.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = 'public.emp'::regclass AND i.indisprimary ORDER BY a.attnum"
    ).fetchall()
    assert key == [("id",), ("n",)]
    with my.cursor() as cur:
        cur.execute("SELECT id, name, n, amount FROM emp ORDER BY id, n")
        source_rows = [tuple(r) for r in cur.fetchall()]
    assert len(source_rows) == 302
    assert source_rows == [tuple(r) for r in pg.execute("SELECT id, name, n, amount FROM public.emp ORDER BY id, n")]


def narrow_emp_widen_dept(my: Any) -> None:
    with my.cursor() as cur:
        cur.execute("ALTER TABLE emp MODIFY name VARCHAR(20)")
        cur.execute("INSERT INTO emp VALUES (6000, 'after', 1, 1)")
        cur.execute("ALTER TABLE dept MODIFY name VARCHAR(80)")
        cur.execute("INSERT INTO dept VALUES (5000, %s, 1, 1)", ("w" * 80,))


def test_varchar_narrowed_while_the_sync_runs_stops_the_table_and_a_longer_one_widens_in_place(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``VARCHAR(40) -> VARCHAR(20)`` is a narrowing (the length is not in the logical type ``string``): the table
    stops with the resync advice instead of PostgreSQL's truncating ``USING name::varchar(20)``; ``VARCHAR(40) ->
    VARCHAR(80)`` on the other table is applied in place and a longer value flows. The line logged for the stop
    names the project as the user did (``sluice sync PATH``), not ``PATH``."""
    urls = {"my": mysql_db_url, "pg": pg_db_url}
    sync = settings(sync_name())
    with embedded_bus(sync, urls, tmp_path) as bus:
        rt = SyncRuntime(sync, urls, bus, tmp_path)
        rt.state.shown_path = "my project"
        thread, out = run_in_thread(rt)
        try:
            wait_for(lambda: equal(my, pg))
            narrow_emp_widen_dept(my)
            wait_for(lambda: pg.execute("SELECT count(*) FROM public.dept WHERE id = 5000").fetchone() == (1,))
            wait_for(lambda: any(t.state == "error" for t in rt.state.tables.values()))
        finally:
            rt.stop()
            thread.join(30)
    assert not thread.is_alive(), "the runtime did not stop within 30 s"
    emp_stopped_dept_widened(out[0], pg, mysql_db_url, "varchar(40)")
    [stopped] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and "stopped" in r.getMessage()]
    assert f"run `sluice sync resync 'my project' {urlsplit_db(mysql_db_url)}.emp` to copy" in stopped, stopped
    assert "PATH" not in stopped, stopped


def emp_stopped_dept_widened(status: SyncStatus, pg: psycopg.Connection[Any], mysql_db_url: str, before: str) -> None:
    """emp stopped at its narrowing (``before`` -> varchar(20)), nothing of it applied; dept widened, its row in."""
    by_table = {t.source_table.split(".")[1]: t for t in status.tables}
    assert by_table["emp"].state == "error", by_table["emp"]
    assert f"cannot change column name from {before} to varchar(20) in place" in by_table["emp"].error
    assert f"sluice sync resync PATH {urlsplit_db(mysql_db_url)}.emp" in by_table["emp"].error
    assert by_table["dept"].state == "streaming", by_table["dept"]
    assert pg.execute("SELECT name FROM public.dept WHERE id = 5000").fetchone() == ("w" * 80,)
    types = pg.execute(
        "SELECT c.relname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relname IN ('emp', 'dept') AND a.attname = 'name' ORDER BY 1"
    ).fetchall()
    assert types == [("dept", "character varying(80)"), ("emp", "character varying(40)")]
    assert pg.execute("SELECT count(*) FROM public.emp WHERE id = 6000").fetchone() == (0,)  # waits for the resync


def test_varchar_narrowed_while_the_sync_was_stopped_stops_the_table_too(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    """The same DDL made between two runs: the source schema read at start already has it, so the target's own
    column type is the "before" (``character varying(40)``), and narrowing it stops the table as well."""
    urls = {"my": mysql_db_url, "pg": pg_db_url}
    sync = settings(sync_name())
    with embedded_bus(sync, urls, tmp_path) as bus:
        SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
        narrow_emp_widen_dept(my)
        status = SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
    emp_stopped_dept_widened(status, pg, mysql_db_url, "character varying(40)")


def run_once(sync: SyncSettings, urls: dict[str, str], bus: Bus, work: Path, layout: str) -> tuple[SyncStatus, SyncRuntime]:
    """One ``--once`` run of ``sync``: capture and apply in one runtime (``one``), or as two runtimes of their own
    roles one after the other (``split``: what ``--processes 2`` and ``--role`` do); apply's status and runtime."""
    if layout == "one":
        rt = SyncRuntime(sync, urls, bus, work, once=True)
        return rt.run(), rt
    SyncRuntime(sync, urls, bus, work, roles=("capture",), once=True).run()
    rt = SyncRuntime(sync, urls, bus, work, roles=("apply",), once=True)
    return rt.run(), rt


@pytest.mark.parametrize("layout", ["one", "split"])
def test_a_table_stopped_by_an_error_stays_stopped_across_restarts_until_resync(
    my: Any,
    pg: psycopg.Connection[Any],
    mysql_db_url: str,
    pg_db_url: str,
    tmp_path: Path,
    layout: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A primary-key change stops the table; a restart keeps it stopped (it used to apply the waiting change under
    the target's old key), its change neither applied nor lost, the other table flowing; the resync recovers it."""
    from sluice.cdc.state import request_resync
    from sluice.cdc.verify import verify_table

    urls = {"my": mysql_db_url, "pg": pg_db_url}
    name = sync_name()
    sync = settings(name)

    def by_name(status: SyncStatus) -> dict[str, str]:
        """State per table; an apply-only process learns a drained table streams about once a second: not in error."""
        return {
            t.source_table.split(".")[1]: t.state if t.state == "error" or layout == "one" else "streaming" for t in status.tables
        }

    with embedded_bus(sync, urls, tmp_path) as bus:
        roles = [("capture", "apply")] if layout == "one" else [("capture",), ("apply",)]
        runtimes = [SyncRuntime(sync, urls, bus, tmp_path, roles=r) for r in roles]
        runs = [run_in_thread(rt) for rt in runtimes]
        try:  # the key changes while the sync runs (a change made while it is stopped is not noticed)
            wait_for(lambda: equal(my, pg))
            with my.cursor() as cur:
                cur.execute("ALTER TABLE emp MODIFY id INT NOT NULL, DROP PRIMARY KEY, ADD PRIMARY KEY (id, n)")
                cur.execute("INSERT INTO emp VALUES (6001, 'pk', 1, 1)")
            wait_for(lambda: any(t.state == "error" for t in runtimes[-1].state.tables.values()))
        finally:
            for rt in runtimes:
                rt.stop()
            for thread, _ in runs:
                thread.join(30)
        stopped = runs[-1][1][0]
        assert by_name(stopped) == {"emp": "error", "dept": "streaming"}
        assert "primary key" in next(t.error for t in stopped.tables if t.state == "error")
        with my.cursor() as cur:
            cur.execute("INSERT INTO dept VALUES (5001, 'flows', 1, 1)")
        for _ in range(2):  # restarts: still stopped, the change waits
            again, _ = run_once(sync, urls, bus, tmp_path, layout)
            assert by_name(again) == {"emp": "error", "dept": "streaming"}
            assert "primary key" in next(t.error for t in again.tables if t.state == "error")
            assert pg.execute("SELECT count(*) FROM public.emp WHERE id = 6001").fetchone() == (0,)
            assert pg.execute("SELECT name FROM public.dept WHERE id = 5001").fetchone() == ("flows",)
        request_resync(tmp_path, name, f"{urlsplit_db(mysql_db_url)}.emp")
        caplog.clear()
        resynced, rt = run_once(sync, urls, bus, tmp_path, layout)
        assert by_name(resynced) == {"emp": "streaming", "dept": "streaming"}
        # the change the resync replaces is not tried first (it used to log an ERROR in a run that ends well)
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
        with my.cursor() as cur:
            cur.execute("INSERT INTO emp VALUES (6001, 'second', 2, 1)")
        after, rt = run_once(sync, urls, bus, tmp_path, layout)
        assert by_name(after) == {"emp": "streaming", "dept": "streaming"}
    for ref in rt.directions[0].refs:
        verdict = verify_table(mysql_db_url, pg_db_url, ref)
        assert verdict.equal, (ref.source.qualified, verdict)
    assert pg.execute("SELECT name FROM public.emp WHERE id = 6001 ORDER BY n").fetchall() == [("pk",), ("second",)]


def test_new_table_matching_a_pattern_reaches_apply_in_the_other_process(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    """``sluice sync`` with capture in a child process (the default on two cores): a table created at the source
    while it runs, matching ``tables:``, is created in the target and its rows applied, without a restart."""
    folder = project(
        tmp_path,
        f"connections:\n  my: {mysql_db_url}\n  pg: {pg_db_url}\n"
        f"syncs:\n  - {{name: {sync_name()}, source: my, target: pg, tables: ['emp*', dept]}}\n",
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sluice", "sync", str(folder), "--processes", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: equal(my, pg), 60)
        with my.cursor() as cur:
            cur.execute(DDL.format(t="emp_new"))
            cur.execute("INSERT INTO emp_new VALUES (1, 'a', 1, 1.50), (2, 'b', 2, 2.50)")
            cur.execute("UPDATE emp_new SET name = 'changed' WHERE id = 2")

        def applied() -> bool:
            try:
                return rows_my(my, "emp_new") == rows_pg(pg, "public.emp_new")
            except psycopg.errors.UndefinedTable:
                return False

        wait_for(applied, 60)
        with my.cursor() as cur:
            cur.execute("INSERT INTO emp_new VALUES (3, 'c', 3, 3.50)")
            cur.execute("UPDATE emp SET n = n + 1 WHERE id = 1")
        wait_for(lambda: applied() and equal(my, pg), 60)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    status = msgspec.json.decode(sluice("sync", "status", str(folder), "--json").stdout)
    (new,) = [t for t in status["tables"] if t["source_table"].endswith(".emp_new")]
    # status said "applied -" while the target table was never made (a row's changes in one batch count once);
    # the sync stopped: the table is no longer "streaming"
    assert new["target_table"] == "public.emp_new" and new["state"] == "stopped" and new["applied"].get("insert"), new


def test_split_sync_exports_the_capture_childs_metrics(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    """``--processes 2 --metrics-port P``: the capture child serves no metrics, its parent's ``/metrics`` shows what
    the child captured (snapshot rows, inserts, progress), read from the child's status file."""
    name = sync_name()
    folder = project(
        tmp_path,
        f"connections:\n  my: {mysql_db_url}\n  pg: {pg_db_url}\n"
        f"syncs:\n  - {{name: {name}, source: my, target: pg, tables: [emp, dept]}}\n",
    )
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sluice", "sync", str(folder), "--processes", "2", "--metrics-port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    emp = {"sync": name, "table": f"{urlsplit_db(mysql_db_url)}.emp"}
    dept = {**emp, "table": f"{urlsplit_db(mysql_db_url)}.dept"}

    def captured(labels: dict[str, str], operation: str) -> float:
        try:
            return scrape(port, "sluice_cdc_changes_captured_total", {**labels, "operation": operation})
        except OSError:  # not listening yet
            return 0.0

    try:
        wait_for(lambda: equal(my, pg), 60)  # the snapshot went through the child and the parent's apply
        wait_for(lambda: captured(emp, "snapshot") >= 300 and captured(dept, "snapshot") >= 300, 30)
        with my.cursor() as cur:
            cur.execute("INSERT INTO emp VALUES " + ", ".join(f"({i}, 'new', {i}, 1.50)" for i in range(1000, 1025)))
        wait_for(lambda: captured(emp, "insert") >= 25, 30)
        assert (captured(emp, "snapshot"), captured(emp, "insert"), captured(dept, "insert")) == (300, 25, 0)
        for labels in (emp, dept):
            assert scrape(port, "sluice_cdc_snapshot_rows_total", labels) == 300
            assert scrape(port, "sluice_cdc_snapshot_progress_ratio", labels) == 1.0
            assert scrape(port, "sluice_cdc_table_stopped", labels) == 0
        wait_for(lambda: equal(my, pg), 60)  # the parent applied them
        assert scrape(port, "sluice_cdc_changes_applied_total", {**emp, "operation": "insert"}) == 25
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


@pytest.mark.parametrize(("target", "identity"), [("pg", "DEFAULT"), ("my", "DEFAULT"), ("pg", "FULL")])
def test_a_key_change_keeps_the_unchanged_toasted_value(
    target: str, identity: str, pg_url: str, pg_db_url: str, mysql_db_url: str, tmp_path: Path
) -> None:
    """PostgreSQL leaves an unchanged TOASTed value out of an update's new row; an update that changes the key
    gives the new key's target row the old row's value (it used to write NULL), and verify finds the tables equal."""
    from tests.servers_fixtures import pg_database

    name = sync_name()
    with pg_database(pg_url) as source, psycopg.connect(source, autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, title text, big text)")  # as in the trial
        conn.execute(f"ALTER TABLE docs REPLICA IDENTITY {identity}")
        big = "(SELECT string_agg(md5((i + g)::text), '') FROM generate_series(1, 2000) i)"  # 64,000 chars, incompressible
        conn.execute(f"INSERT INTO docs SELECT g, 't' || g, {big} FROM generate_series(1, 3) g")
        assert conn.execute("SELECT pg_column_size(big) FROM docs WHERE id = 1").fetchone() == (64000,)  # out of line
        expected = conn.execute("SELECT big FROM docs WHERE id = 1").fetchone()
        (tmp_path / "sluice.yaml").write_text(
            f"connections:\n  src: {source}\n  dst: {pg_db_url if target == 'pg' else mysql_db_url}\n"
            f"syncs:\n  - {{name: {name}, source: src, target: dst, tables: [docs]}}\n"
        )
        try:
            sluice("sync", str(tmp_path), "--once")  # the snapshot
            conn.execute("UPDATE docs SET title = 'changed' WHERE id = 2")
            conn.execute("UPDATE docs SET id = 10, title = 'moved' WHERE id = 1")
            done = sluice("sync", str(tmp_path), "--once")
            assert "0 table(s) in error" in done.stdout, done.stdout + done.stderr
            verify = sluice("sync", "verify", str(tmp_path), check=False)
        finally:
            sluice("sync", "drop", str(tmp_path), check=False)
    assert verify.returncode == 0 and "EQUAL" in verify.stdout, verify.stdout + verify.stderr
    if target == "pg":
        with psycopg.connect(pg_db_url) as dst:
            found = dst.execute("SELECT id, title, big FROM public.docs WHERE id IN (1, 10)").fetchall()
    else:
        dst_my = mysql_connect(mysql_db_url)
        with dst_my.cursor() as cur:
            cur.execute("SELECT id, title, big FROM docs WHERE id IN (1, 10)")
            found = [tuple(r) for r in cur.fetchall()]
        dst_my.close()
    assert expected is not None and [tuple(r) for r in found] == [(10, "moved", expected[0])]


@pytest.mark.parametrize("target", ["pg", "my"])
def test_uuid_and_inet_columns_stream_as_text(
    target: str, mysql_url: str, mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    """MariaDB's UUID, INET4 and INET6 reach the target the same from the snapshot and from the stream (the binlog
    carries them as BINARY: the stream published their bytes, which PostgreSQL's uuid column cannot take)."""
    from tests.servers_fixtures import mysql_database, mysql_execute

    name = sync_name()
    rows = [
        "(1, '123e4567-e89b-12d3-a456-426614174000', '192.168.0.1', '2001:db8::ff00:42:8329')",
        "(2, NULL, NULL, NULL)",
    ]
    with mysql_database(mysql_url) as source:
        mysql_execute(source, "CREATE TABLE hosts (id INT PRIMARY KEY, u UUID, i4 INET4, i6 INET6)")
        mysql_execute(source, f"INSERT INTO hosts VALUES {rows[0]}")
        (tmp_path / "sluice.yaml").write_text(
            f"connections:\n  src: {source}\n  dst: {pg_db_url if target == 'pg' else mysql_db_url}\n"
            f"syncs:\n  - {{name: {name}, source: src, target: dst, tables: [hosts]}}\n"
        )
        try:
            sluice("sync", str(tmp_path), "--once")  # the snapshot
            mysql_execute(
                source,
                f"INSERT INTO hosts VALUES {rows[1]}, (3, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '10.0.0.1', '::ffff:10.0.0.1')",
            )
            mysql_execute(source, "UPDATE hosts SET u = 'f81d4fae-7dec-11d0-a765-00a0c91e6bf6', i6 = 'fe80::1' WHERE id = 1")
            done = sluice("sync", str(tmp_path), "--once")
            assert "0 table(s) in error" in done.stdout and "dead" not in done.stderr, done.stdout + done.stderr
            verify = sluice("sync", "verify", str(tmp_path), check=False)
        finally:
            sluice("sync", "drop", str(tmp_path), check=False)
    assert verify.returncode == 0 and "EQUAL" in verify.stdout, verify.stdout + verify.stderr
    expected = [
        (1, "f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "192.168.0.1", "fe80::1"),
        (2, None, None, None),
        (3, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "10.0.0.1", "::ffff:10.0.0.1"),
    ]
    query = "SELECT id, u, i4, i6 FROM {} ORDER BY id"
    if target == "pg":
        with psycopg.connect(pg_db_url) as dst:
            fetched = dst.execute(query.format("public.hosts")).fetchall()
        found = [(r[0], *(None if v is None else str(v) for v in r[1:])) for r in fetched]  # uuid.UUID as its text
    else:
        dst_my = mysql_connect(mysql_db_url)
        with dst_my.cursor() as cur:
            cur.execute(query.format("hosts"))
            found = [tuple(r) for r in cur.fetchall()]
        dst_my.close()
    assert found == expected
