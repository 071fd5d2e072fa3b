"""A sync stopped in the middle of a table's snapshot (Ctrl-C, ``kill -9`` of the parent or of every process)
while the source takes writes, then restarted: the snapshot resumes from its last chunk and nothing is lost
(``sluice sync verify``), MariaDB -> PostgreSQL and PostgreSQL -> PostgreSQL on the embedded bus, MariaDB ->
PostgreSQL on Kafka."""

from __future__ import annotations

import contextlib
import os
import queue
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

import msgspec
import psycopg
import pytest
from tests.servers_fixtures import mysql_connect, pg_database

from sluice.bus.embedded import EmbeddedBus
from sluice.bus.registry import open_bus
from sluice.cdc.checkpoint import read_progress

pytestmark = [pytest.mark.mysql, pytest.mark.postgres]
SRC = Path(__file__).resolve().parents[2] / "src"
ROWS = 200_000
KEYS = ROWS + 20_000
"""The writer touches keys up to here: updates and deletes of snapshotted and not yet snapshotted rows, inserts past the end."""
STOPS = ("SIGINT to the process group", "SIGKILL of the parent", "SIGKILL of every process", "SIGINT to the process group")


def my_writer(url: str, stop: threading.Event, seed: int) -> None:
    """Inserts, updates and deletes over the whole key range of ``big`` until ``stop``."""
    conn = mysql_connect(url)
    rng = random.Random(seed)
    try:
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute(*change(rng, "REPLACE INTO big VALUES (%s, %s, %s)"))
                time.sleep(0.002)
    finally:
        conn.close()


def pg_writer(url: str, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    upsert = "INSERT INTO big VALUES (%s, %s, %s) ON CONFLICT (id) DO UPDATE SET v = excluded.v, d = excluded.d"
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            conn.execute(*change(rng, upsert))
            time.sleep(0.002)


def change(rng: random.Random, upsert: str) -> tuple[str, tuple[Any, ...]]:
    key, roll = rng.randrange(KEYS), rng.random()
    if roll < 0.2:
        return "DELETE FROM big WHERE id = %s", (key,)
    if roll < 0.6:
        return "UPDATE big SET v = %s WHERE id BETWEEN %s AND %s", (f"u{rng.randrange(999)}", key, key + 20)
    return upsert, (key, f"i{rng.randrange(999)}", rng.randrange(10**8) / 100)


@pytest.fixture
def my_source(mysql_db_url: str) -> str:
    conn = mysql_connect(mysql_db_url)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE big (id BIGINT PRIMARY KEY, v VARCHAR(40), d DECIMAL(20,6))")
            cur.execute(f"INSERT INTO big SELECT seq, CONCAT('v', seq), seq / 7 FROM seq_1_to_{ROWS}")
    finally:
        conn.close()
    return mysql_db_url


@pytest.fixture
def pg_source(pg_url: str) -> Iterator[str]:
    with pg_database(pg_url) as url, psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE big (id bigint PRIMARY KEY, v varchar(40), d numeric(20,6))")
        conn.execute(f"INSERT INTO big SELECT g, 'v' || g, round(g / 7.0, 6) FROM generate_series(1, {ROWS}) g")
        yield url


def lines_of(proc: subprocess.Popen[str]) -> tuple[queue.Queue[str], threading.Thread]:
    """The output lines of ``proc``, read by a thread (so waiting for one can time out), and that thread."""
    out: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return out, reader


def wait_for_line(lines: queue.Queue[str], wanted: Callable[[str], bool], timeout: float) -> bool:
    """Whether a line ``wanted`` came within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return False
        if wanted(line):
            return True


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    # Zombies of the group (reaped by init later) count as gone.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return False
    return True


def stop_during_snapshot(folder: Path, bus: list[str], how: str, rng: random.Random) -> None:
    """Start ``sluice sync folder`` (``bus``: ``--bus URL`` or nothing); once it reports snapshot progress, stop it
    ``how`` a random moment later."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sluice", "sync", str(folder), *bus],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a shell job: Ctrl-C reaches parent and capture child
    )
    lines, reader = lines_of(proc)
    try:
        # No progress line: an earlier run finished the snapshot (the stop then lands in the stream).
        wait_for_line(lines, lambda line: line.startswith("snapshot "), 30)
        time.sleep(rng.uniform(0.0, 0.6))
    finally:
        if how == "SIGINT to the process group":
            os.killpg(proc.pid, signal.SIGINT)
        elif how == "SIGKILL of the parent":
            proc.send_signal(signal.SIGKILL)  # its capture child gets SIGTERM from the kernel (PR_SET_PDEATHSIG)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(60)
        deadline = time.monotonic() + 60
        while not group_gone(proc.pid):
            assert time.monotonic() < deadline, "the sync's processes did not end"
            time.sleep(0.1)
        reader.join(10)
        assert proc.stdout is not None
        proc.stdout.close()


def snapshot_unfinished(folder: Path, bus_url: str | None, sync: str, side: str) -> bool:
    bus = open_bus(bus_url) if bus_url else EmbeddedBus(str(folder / ".sluice" / "bus.db"))
    try:
        progress = read_progress(bus, sync, side)
    finally:
        bus.close()
    return progress is not None and not all(entry.done for entry in progress.tables.values())


def sluice(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-m", "sluice", *args], capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.parametrize(
    ("source", "bus_kind"), [("my", "embedded"), ("pg", "embedded"), pytest.param("my", "kafka", marks=pytest.mark.kafka)]
)
def test_snapshot_stopped_at_random_moments_under_writes_resumes_without_loss(
    source: str, bus_kind: str, request: pytest.FixtureRequest, pg_db_url: str, tmp_path: Path
) -> None:
    url = request.getfixturevalue("my_source" if source == "my" else "pg_source")
    bus_url = f"{request.getfixturevalue('kafka_url')}?namespace=cut-{uuid.uuid4().hex[:8]}" if bus_kind == "kafka" else None
    bus = ["--bus", bus_url] if bus_url else []
    sync = f"cut_{source}"
    (tmp_path / "sluice.yaml").write_text(
        f"connections:\n  src: {url}\n  pg: {pg_db_url}\n"
        f"syncs:\n  - {{name: {sync}, source: src, target: pg, tables: [big], chunk_rows: 2000}}\n"
    )
    stop = threading.Event()
    writer = threading.Thread(target=my_writer if source == "my" else pg_writer, args=(url, stop, 7))
    writer.start()
    rng = random.Random(3)
    cut = 0
    try:
        for how in STOPS:
            stop_during_snapshot(tmp_path, bus, how, rng)
            if snapshot_unfinished(tmp_path, bus_url, sync, "src"):
                cut += 1
                status = msgspec.json.decode(sluice("sync", "status", str(tmp_path), "--json").stdout)
                states = {table["source_table"]: table.get("state", "waiting") for table in status["tables"]}
                assert "streaming" not in states.values(), states
        time.sleep(1.0)  # the writer goes on a little while nothing runs
    finally:
        stop.set()
        writer.join()
    assert cut >= 1, "a stop should land in the snapshot"
    done = sluice("sync", str(tmp_path), "--once", *bus)
    assert "0 table(s) in error" in done.stdout, done.stdout + done.stderr
    verify = sluice("sync", "verify", str(tmp_path), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "EQUAL" in verify.stdout
