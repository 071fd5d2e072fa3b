"""``partitions: 4`` end to end: MariaDB -> PostgreSQL on Kafka, capture in one process and apply in two.

Each test runs ``sluice sync --role capture`` and two ``sluice sync --role apply`` processes on one project
(Kafka spreads each table's four partitions over the two applies), a writer doing inserts, updates, deletes,
updates of a few hot keys over and over, and key changes; it ends when the target equals the source row for
row, then ``sluice sync verify`` must agree.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.servers_fixtures import delete_kafka_namespace, mysql_connect

from sluice.bus.registry import open_bus
from sluice.cdc.events import apply_group

pytestmark = [pytest.mark.mysql, pytest.mark.postgres, pytest.mark.kafka]
SRC = Path(__file__).resolve().parents[2] / "src"
ROWS = 400
HOT = (1, 2, 3)


class Sync:
    """One project with a partitioned sync of table ``acct`` and its processes."""

    def __init__(self, folder: Path, name: str, bus: str, mysql_url: str) -> None:
        self.folder, self.name, self.bus, self.mysql_url = folder, name, bus, mysql_url
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {**os.environ, "PYTHONPATH": str(SRC)}
        self.database = mysql_url.rsplit("/", 1)[1]

    def start(self, label: str, role: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "sluice", "sync", "run", str(self.folder), "--role", role, "--log-level", "info"]
        with (self.folder / f"{label}.log").open("ab") as log:
            proc = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs[label] = proc
        return proc

    def kill(self, label: str) -> None:
        proc = self.procs.pop(label)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def alive(self) -> None:
        for label, proc in self.procs.items():
            assert proc.poll() is None, f"{label} exited {proc.returncode}:\n{self.log(label)}"

    def log(self, label: str) -> str:
        path = self.folder / f"{label}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}" for path in self.folder.glob("*.log"))

    def sluice(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sluice", *args], capture_output=True, text=True, env=self.env, timeout=300, check=False
        )

    def apply_statuses(self) -> list[dict[str, Any]]:
        out = []
        for path in (self.folder / ".sluice" / "syncs").glob(f"{self.name}.apply.*.json"):
            out.append(json.loads(path.read_text()))
        return out

    def group_members(self) -> int:
        """Members of the apply group when it is stable (0 while it rebalances)."""
        from confluent_kafka import ConsumerGroupState

        from sluice.bus.kafka import KafkaBus

        bus = open_bus(self.bus)
        try:
            assert isinstance(bus, KafkaBus)
            group = bus.kafka_name(apply_group(self.name, "my"))
            found = bus.admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=30)
            return len(found.members) if found.state == ConsumerGroupState.STABLE else 0
        finally:
            bus.close()


@pytest.fixture
def sync(mysql_db_url: str, pg_db_url: str, kafka_url: str, tmp_path: Path) -> Iterator[Sync]:
    conn = mysql_connect(mysql_db_url)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE acct (id INT PRIMARY KEY, name VARCHAR(40), n INT NOT NULL, note VARCHAR(20))")
        cur.execute("INSERT INTO acct VALUES " + ", ".join(f"({i}, 'n{i}', 0, 'x{i}')" for i in range(ROWS)))
    conn.close()
    name = f"pkeys_{uuid.uuid4().hex[:8]}"
    bus = f"{kafka_url}?namespace=pkeys-{uuid.uuid4().hex[:8]}"
    (tmp_path / "sluice.yaml").write_text(
        f"bus: {bus}\nconnections:\n  my: {mysql_db_url}\n  pg: {pg_db_url}\n"
        f"syncs:\n  - {{name: {name}, source: my, target: pg, tables: [acct], partitions: 4, chunk_rows: 100,"
        " batch_rows: 200}\n"
    )
    runner = Sync(tmp_path, name, bus, mysql_db_url)
    try:
        yield runner
    finally:
        runner.stop()
        delete_kafka_namespace(bus)


class Writer:
    """Inserts, updates, deletes, updates of the hot keys, and key changes on ``acct``, until stopped."""

    def __init__(self, url: str, seed: int) -> None:
        self.url, self.rng = url, random.Random(seed)
        self.stop = threading.Event()
        self.hot = dict.fromkeys(HOT, 0)
        """Increments of each hot key's ``n`` (nothing else writes those keys)."""
        self.key_changes = 0
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)

    def _run(self) -> None:
        import pymysql

        conn = mysql_connect(self.url)
        moved = 100_000
        try:
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    key, roll = self.rng.randrange(ROWS), self.rng.random()
                    try:
                        if roll < 0.3 or key in HOT:
                            hot = self.rng.choice(HOT)
                            cur.execute("UPDATE acct SET n = n + 1 WHERE id = %s", (hot,))
                            self.hot[hot] += cur.rowcount
                        elif roll < 0.45:
                            cur.execute("DELETE FROM acct WHERE id = %s", (key,))
                        elif roll < 0.7:
                            cur.execute("UPDATE acct SET n = n + 1, name = %s WHERE id = %s", (f"u{self.rng.randrange(99)}", key))
                        elif roll < 0.75:
                            moved += 1
                            cur.execute("UPDATE acct SET id = %s, name = 'moved' WHERE id = %s", (moved, key))
                            self.key_changes += cur.rowcount
                        else:
                            cur.execute(
                                "REPLACE INTO acct (id, name, n) VALUES (%s, %s, %s)", (key, f"i{key}", self.rng.randrange(1000))
                            )
                    except pymysql.err.OperationalError as exc:  # a DDL of the test holding the table: try again
                        self.errors.append(exc)
                    time.sleep(0.001)
        finally:
            conn.close()


def columns_my(url: str) -> list[str]:
    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE()"
                        " AND table_name = 'acct' ORDER BY ordinal_position")  # fmt: skip
            return [str(row[0]) for row in cur.fetchall()]
    finally:
        conn.close()


def rows_my(url: str, columns: list[str]) -> list[tuple[Any, ...]]:
    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT {', '.join(columns)} FROM acct ORDER BY id")
            return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


def rows_pg(url: str, columns: list[str]) -> list[tuple[Any, ...]] | None:
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            return [tuple(r) for r in conn.execute(f"SELECT {', '.join(columns)} FROM public.acct ORDER BY id").fetchall()]
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
            return None


def wait_for(check: Callable[[], bool], what: str, sync: Sync, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        sync.alive()
        assert time.monotonic() < deadline, f"{what}: not reached in {timeout:.0f} s\n{sync.logs()}"
        time.sleep(0.25)


def same_tables(sync: Sync, pg_url: str) -> bool:
    columns = columns_my(sync.mysql_url)
    return rows_pg(pg_url, columns) == rows_my(sync.mysql_url, columns)


def start_all(sync: Sync, capture: bool = True) -> None:
    """Capture (unless started already), then two applies; returns once both applies are members of the (stable)
    group."""
    if capture:
        sync.start("capture", "capture")
    sync.start("apply-1", "apply")
    sync.start("apply-2", "apply")
    wait_for(lambda: sync.group_members() == 2, "both apply processes in the group", sync, 120)


def verified(sync: Sync, pg_url: str) -> None:
    """The target equals the source (rows, then ``sluice sync verify``)."""
    wait_for(lambda: same_tables(sync, pg_url), "target equal to source", sync)
    done = sync.sluice("sync", "verify", str(sync.folder))
    assert done.returncode == 0, done.stdout + done.stderr


def test_pkeys_two_apply_processes_keep_each_keys_order(sync: Sync, pg_db_url: str) -> None:
    """Apply starts behind a backlog (capture ran alone for a while), so the partitions are drained side by side
    in batches: a key's changes spread over two partitions would end in the wrong order."""
    sync.start("capture", "capture")
    with Writer(sync.mysql_url, 7) as writer:
        time.sleep(4.0)
        start_all(sync, capture=False)
        time.sleep(3.0)
    assert min(writer.hot.values()) > 20 and writer.key_changes > 5 and not writer.errors
    verified(sync, pg_db_url)
    # Each hot key was updated many times in a row: its last value in the target is the count of its updates.
    assert {row[0]: row[1] for row in rows_pg(pg_db_url, ["id", "n"]) or [] if row[0] in HOT} == writer.hot
    statuses = sync.apply_statuses()
    assert len(statuses) == 2
    for status in statuses:  # each process applied part of the table
        assert sum(sum(t["applied"].values()) for t in status["tables"]) > 0, statuses
    status = json.loads(sync.sluice("sync", "status", str(sync.folder), "--json").stdout)
    table = status["tables"][0]
    assert sum(table["applied"].values()) == sum(sum(t["applied"].values()) for s in statuses for t in s["tables"])


def test_pkeys_add_drop_column_and_truncate_mid_stream(sync: Sync, pg_db_url: str) -> None:
    """Schema changes and a TRUNCATE while the writer runs, the first ones in a backlog apply drains partition by
    partition: each partition must stop at them until all have reached them (a column added with a default, or
    a truncate, applied while another partition still has older rows to write would leave those rows wrong)."""
    sync.start("capture", "capture")
    conn = mysql_connect(sync.mysql_url)
    try:
        with Writer(sync.mysql_url, 11), conn.cursor() as cur:
            time.sleep(1.5)
            cur.execute("ALTER TABLE acct ADD COLUMN c2 INT NOT NULL DEFAULT 5")
            time.sleep(1.0)
            cur.execute("UPDATE acct SET c2 = id WHERE id < 50")
            time.sleep(1.0)
            cur.execute("TRUNCATE TABLE acct")
            time.sleep(1.0)
            start_all(sync, capture=False)
            cur.execute("ALTER TABLE acct DROP COLUMN note")
            time.sleep(1.5)
    finally:
        conn.close()
    assert columns_my(sync.mysql_url) == ["id", "name", "n", "c2"]
    verified(sync, pg_db_url)
    with psycopg.connect(pg_db_url, autocommit=True) as pg:
        columns = [r[0] for r in pg.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'acct'"
                                            " ORDER BY ordinal_position").fetchall()]  # fmt: skip
        barriers = pg.execute("SELECT barrier FROM sluice_cdc.positions WHERE bus_partition = -1").fetchall()
    assert columns == ["id", "name", "n", "c2"]
    assert len(barriers) == 1 and '"done"' in barriers[0][0]


def test_pkeys_resync_with_partitions(sync: Sync, pg_db_url: str) -> None:
    start_all(sync)
    wait_for(lambda: same_tables(sync, pg_db_url), "the snapshot", sync)
    with psycopg.connect(pg_db_url, autocommit=True) as pg:
        pg.execute("DELETE FROM public.acct WHERE id < 100")
        pg.execute("UPDATE public.acct SET name = 'broken'")
        pg.execute("INSERT INTO public.acct VALUES (999999, 'extra', 0, NULL)")
    with Writer(sync.mysql_url, 13):
        time.sleep(1.0)
        table = f"{sync.database}.acct"
        done = sync.sluice("sync", "resync", str(sync.folder), table)
        assert done.returncode == 0, done.stderr
        time.sleep(3.0)
    verified(sync, pg_db_url)
    assert not (sync.folder / ".sluice" / "syncs" / f"{sync.name}.resync" / table).exists()


def test_pkeys_kill_9_of_one_apply_process_then_restart(sync: Sync, pg_db_url: str) -> None:
    start_all(sync)
    with Writer(sync.mysql_url, 17):
        time.sleep(2.5)
        sync.kill("apply-1")
        time.sleep(2.5)
        sync.start("apply-1", "apply")
        time.sleep(2.5)
    verified(sync, pg_db_url)


def test_pkeys_a_refused_schema_change_stops_the_table_everywhere_until_resync(sync: Sync, pg_db_url: str) -> None:
    """The target refuses a DDL (a view depends on the column): the apply that tried it records the failure, the
    partitions waiting for it in the other process stop too, and a resync (after the view is gone) recovers."""
    start_all(sync)
    wait_for(lambda: same_tables(sync, pg_db_url), "the snapshot", sync)
    with psycopg.connect(pg_db_url, autocommit=True) as pg:
        pg.execute("CREATE VIEW public.acct_n AS SELECT n FROM public.acct")  # PostgreSQL then refuses to alter n
    conn = mysql_connect(sync.mysql_url)
    try:
        with conn.cursor() as cur:
            cur.execute("ALTER TABLE acct MODIFY n BIGINT NOT NULL")
            cur.execute("UPDATE acct SET n = 5000000000 WHERE id < 10")
    finally:
        conn.close()

    def states() -> list[str]:
        return [t.get("state", "waiting") for s in sync.apply_statuses() for t in s["tables"]]

    wait_for(lambda: len(sync.apply_statuses()) == 2 and set(states()) == {"error"}, "the table in error in both applies", sync)
    errors = {t.get("error", "") for s in sync.apply_statuses() for t in s["tables"]}
    assert all("refused schema change" in e for e in errors), errors
    with psycopg.connect(pg_db_url, autocommit=True) as pg:
        pg.execute("DROP VIEW public.acct_n")
    done = sync.sluice("sync", "resync", str(sync.folder), f"{sync.database}.acct")
    assert done.returncode == 0, done.stderr
    verified(sync, pg_db_url)
    wait_for(lambda: "error" not in states(), "errors cleared", sync)
