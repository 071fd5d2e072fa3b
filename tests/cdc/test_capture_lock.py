"""One capture per side of a sync (:mod:`sluice.cdc.capture_lock`), with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.servers_fixtures import mysql_connect

from helpers import wait_for
from sluice.cdc import capture_lock
from sluice.cdc.capture_lock import CaptureLock, CaptureRunning, capture_holder

SRC = Path(__file__).resolve().parents[2] / "src"
HOLD = """
import sys, time
from pathlib import Path
from sluice.cdc.capture_lock import CaptureLock
CaptureLock(Path(sys.argv[1]), "s1", "my").acquire()
print("held", flush=True)
time.sleep(600)
"""


def hold_in_child(work_dir: Path) -> subprocess.Popen[str]:
    """A process holding the capture lock of side ``my`` of sync ``s1``, once it printed ``held``."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(work_dir)], env=env, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "held\n"
    return child


def test_a_second_process_is_refused_with_the_holders_pid_until_it_dies(tmp_path: Path) -> None:
    child = hold_in_child(tmp_path)
    try:
        with pytest.raises(CaptureRunning, match=rf"^sync s1: capture of side my already runs in pid {child.pid} \(started "):
            CaptureLock(tmp_path, "s1", "my").acquire()
        refusal = capture_holder(tmp_path, "s1", "my")
        assert refusal is not None and f"pid {child.pid}" in str(refusal) and str(refusal).endswith("; stop it first")
        assert capture_holder(tmp_path, "s1", "pg") is None  # the other side, and other syncs, are free
        assert capture_holder(tmp_path, "s2", "my") is None
    finally:
        child.send_signal(signal.SIGKILL)  # the kernel releases the flock of a killed process: no stale lock
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    lock = CaptureLock(tmp_path, "s1", "my")
    lock.acquire()
    try:
        assert capture_holder(tmp_path, "s1", "my") is not None  # held by this process now, probe included
    finally:
        lock.release()
    assert capture_holder(tmp_path, "s1", "my") is None


ORPHAN_CHILD = """
import ctypes, signal, sys, time
from pathlib import Path
from sluice.cdc.capture_lock import CaptureLock
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG, as sluice sync's capture child does
CaptureLock(Path(sys.argv[1]), "s1", "my").acquire()
print("held", flush=True)
while not stopping:
    time.sleep(0.05)
time.sleep(2)  # a clean stop takes a while: the capture flushes its last changes
"""
ORPHAN_PARENT = """
import os, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "SLUICE_SYNC_CAPTURE_CHILD": "1"})
assert child.stdout.readline() == "held\\n"
print(child.pid, flush=True)
child.wait()
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the orphan check reads /proc (Linux)")
def test_a_start_waits_for_a_capture_child_whose_parent_was_killed(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_PARENT, ORPHAN_CHILD, str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    parent.stdout.close()
    with pytest.raises(CaptureRunning, match=rf"in pid {child_pid} "):  # its parent lives: refused at once
        CaptureLock(tmp_path, "s1", "my").acquire()
    parent.send_signal(signal.SIGKILL)  # the child gets SIGTERM and takes 2 s to stop
    parent.wait()
    lock = CaptureLock(tmp_path, "s1", "my")
    lock.acquire()  # waits for the orphan instead of refusing
    try:
        assert f'"pid":{os.getpid()},' in lock.path.read_text()
    finally:
        lock.release()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the orphan check reads /proc (Linux)")
def test_a_capture_child_that_does_not_stop_after_its_parent_died_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(capture_lock, "ORPHAN_WAIT_S", 1.0)
    stuck = ORPHAN_CHILD.replace("time.sleep(2)", "time.sleep(600)")  # a read that never returns
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    # "sluice" and "capture" among its arguments, as a `sluice sync run ... --role capture` child's command line
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_PARENT.replace("sys.argv[2]]", "sys.argv[2], 'sluice', 'capture']"), stuck, str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    parent.stdout.close()
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    lock = CaptureLock(tmp_path, "s1", "my")
    lock.acquire()  # waited ORPHAN_WAIT_S, then killed it
    try:
        assert f'"pid":{os.getpid()},' in lock.path.read_text()
        stat = Path(f"/proc/{child_pid}/stat")
        assert not stat.exists() or stat.read_text().rpartition(")")[2].split()[0] in "ZX"  # gone, or a zombie
    finally:
        lock.release()


@pytest.mark.mysql
@pytest.mark.postgres
@pytest.mark.parametrize("first_processes", ["1", "2"])
def test_a_second_sluice_sync_refuses_and_the_first_keeps_streaming(
    mysql_db_url: str, pg_db_url: str, tmp_path: Path, first_processes: str
) -> None:
    my = mysql_connect(mysql_db_url)
    with my.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
        cur.execute("INSERT INTO t VALUES (1, 1)")
    name = f"sync_{uuid.uuid4().hex[:8]}"
    (tmp_path / "sluice.yaml").write_text(
        f"connections:\n  my: {mysql_db_url}\n  pg: {pg_db_url}\n"
        f"syncs:\n  - {{name: {name}, source: my, target: pg, tables: [t]}}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    command = [sys.executable, "-m", "sluice", "sync", str(tmp_path)]
    first = subprocess.Popen(
        [*command, "--processes", first_processes], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    pg = psycopg.connect(pg_db_url, autocommit=True)

    def target_v() -> Any:
        try:
            row = pg.execute("SELECT v FROM public.t WHERE id = 1").fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        return None if row is None else row[0]

    try:
        wait_for(lambda: target_v() == 1, 60, "the first change applied")
        holder = capture_holder(tmp_path / ".sluice", name, "my")
        assert holder is not None
        capturing = int(str(holder).split(" pid ")[1].split()[0])
        assert capturing == first.pid if first_processes == "1" else capturing != first.pid  # the child in split mode
        for processes in ("1", "2"):
            second = subprocess.run(
                [*command, "--processes", processes], env=env, capture_output=True, text=True, timeout=120, check=False
            )
            assert second.returncode == 2, second.stdout + second.stderr
            assert f"sync {name}: capture of side my already runs in pid {capturing} (started " in second.stderr
            assert "stop it first" in second.stderr
        assert first.poll() is None, "the first sync stopped"
        with my.cursor() as cur:
            cur.execute("UPDATE t SET v = 2 WHERE id = 1")
        wait_for(
            lambda: target_v() == 2, 60, "the second change applied"
        )  # the first still streams: its binlog dump was not taken over
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
        pg.close()
        my.close()
    assert "took over" not in err and "error" not in err, err
