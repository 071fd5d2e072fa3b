"""Apply outlives a restart of its target: ``sluice sync`` against a PostgreSQL of the test's own (never the
shared one) that is stopped and started again while the source takes writes reconnects with backoff, resumes
from the stored positions and loses nothing (``sluice sync verify``)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from tests.servers_fixtures import mysql_connect

pytestmark = [pytest.mark.mysql, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
SCRIPT = ROOT / "scripts" / "servers" / "postgres.sh"


def free_port() -> int:
    """A port below 32768 nothing listens on at 127.0.0.1."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(26000, 32000)
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise AssertionError("no free port")


class OwnPostgres:
    """A PostgreSQL of its own (``scripts/servers/postgres.sh`` with its own port and base folder)."""

    def __init__(self) -> None:
        self.base = ROOT / ".tmp" / "servers" / f"pg-restart-{uuid.uuid4().hex[:8]}"
        self.env = {**os.environ, "SLUICE_PG_PORT": str(free_port()), "SLUICE_PG_DIR": str(self.base)}

    def run(self, command: str) -> str:
        done = subprocess.run([str(SCRIPT), command], env=self.env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


@pytest.fixture
def own_pg() -> Iterator[tuple[OwnPostgres, str]]:
    server = OwnPostgres()
    try:
        url = server.run("start")
        yield server, url
    finally:
        server.run("stop")
        shutil.rmtree(server.base, ignore_errors=True)
        Path(f"{server.base}.lock").unlink(missing_ok=True)


def writer(url: str, stop: threading.Event) -> None:
    conn = mysql_connect(url)
    rng = random.Random(1)
    try:
        with conn.cursor() as cur:
            while not stop.is_set():
                key, roll = rng.randrange(3000), rng.random()
                if roll < 0.2:
                    cur.execute("DELETE FROM acct WHERE id = %s", (key,))
                elif roll < 0.6:
                    cur.execute("UPDATE acct SET n = n + 1 WHERE id = %s", (key,))
                else:
                    cur.execute("REPLACE INTO acct VALUES (%s, %s, %s)", (key, f"i{key}", rng.randrange(1000)))
                time.sleep(0.002)
    finally:
        conn.close()


def target_rows(url: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute("SELECT count(*) FROM public.acct").fetchone()
            return int(row[0]) if row else 0
    except psycopg.Error:
        return 0


def test_target_restart_reconnects_and_loses_nothing(mysql_db_url: str, own_pg: tuple[OwnPostgres, str], tmp_path: Path) -> None:
    server, pg_url = own_pg
    conn = mysql_connect(mysql_db_url)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE acct (id INT PRIMARY KEY, name VARCHAR(40), n INT)")
        cur.execute("INSERT INTO acct SELECT seq, CONCAT('n', seq), 0 FROM seq_1_to_2000")
    conn.close()
    (tmp_path / "sluice.yaml").write_text(
        f"connections:\n  my: {mysql_db_url}\n  pg: {pg_url}\n"
        "syncs:\n  - {name: restarts, source: my, target: pg, tables: [acct]}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    stop = threading.Event()
    write = threading.Thread(target=writer, args=(mysql_db_url, stop))
    command = [sys.executable, "-m", "sluice", "sync", str(tmp_path)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while target_rows(pg_url) < 2000:  # the snapshot is in
            assert time.monotonic() < deadline and proc.poll() is None, "the snapshot did not arrive"
            time.sleep(0.2)
        write.start()
        time.sleep(1.0)
        server.run("stop")  # pg_ctl stop -m fast: the sync's sessions end with AdminShutdown
        time.sleep(4.0)
        assert proc.poll() is None, "the sync ended when its target went away"
        server.run("start")
        time.sleep(3.0)
        stop.set()
        write.join()
        time.sleep(5.0)
        assert proc.poll() is None, "the sync ended after its target came back"
    finally:
        stop.set()
        if write.is_alive():
            write.join()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert "Traceback" not in err, err
    assert "went away" in err  # said in one line, with the retry
    done = subprocess.run(
        [sys.executable, "-m", "sluice", "sync", str(tmp_path), "--once"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    verify = subprocess.run(
        [sys.executable, "-m", "sluice", "sync", "verify", str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "EQUAL" in verify.stdout
