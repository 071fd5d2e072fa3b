"""The parent of a ``--processes 2`` sync exports its capture child's figures (:mod:`sluice.cdc.child_metrics`),
from status files written here by hand."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import msgspec
from prometheus_client import REGISTRY

from sluice.cdc.child_metrics import ChildMetrics
from sluice.cdc.state import SyncState
from sluice.cdc.status import SyncStatus, TableStatus, read_status, status_dir, write_status
from sluice.cli.sync import _watch_child

PID = 4242
DIRECTION = "my -> pg"


def child_file(folder: Path, sync: str, pid: int = PID, **table: object) -> None:
    """The capture child's status file with one table, ``app.emp``, as ``table`` says."""
    row = TableStatus(source_table="app.emp", target_table="public.emp", direction=DIRECTION, **table)  # type: ignore[arg-type]
    status = SyncStatus(name=sync, source="my", target="pg", direction="one-way", pid=pid, roles=["capture:my"], tables=[row])
    write_status(folder, status, "capture")


def value(metric: str, sync: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric, {"sync": sync, "table": "app.emp", **labels})


def captured(sync: str, operation: str) -> float | None:
    return value("sluice_cdc_changes_captured_total", sync, operation=operation)


def test_counters_grow_by_the_difference_and_never_decrease(tmp_path: Path) -> None:
    sync = f"s_{uuid.uuid4().hex[:8]}"
    figures = ChildMetrics(tmp_path, sync, PID)
    child_file(tmp_path, sync, captured={"snapshot": 5, "insert": 2}, snapshot_rows=5, snapshot_total=10, state="snapshotting")
    assert figures.read()
    assert (captured(sync, "snapshot"), captured(sync, "insert"), captured(sync, "delete")) == (5, 2, 0)
    assert value("sluice_cdc_snapshot_rows_total", sync) == 5
    assert value("sluice_cdc_snapshot_progress_ratio", sync) == 0.5
    assert value("sluice_cdc_invalid_dates_total", sync) == 0
    assert figures.read()  # the same file again: nothing counted twice
    assert (captured(sync, "snapshot"), captured(sync, "insert")) == (5, 2)
    child_file(tmp_path, sync, captured={"snapshot": 5, "insert": 7, "delete": 1}, snapshot_rows=5, invalid_dates=3)
    assert figures.read()
    assert (captured(sync, "snapshot"), captured(sync, "insert"), captured(sync, "delete")) == (5, 7, 1)
    assert value("sluice_cdc_invalid_dates_total", sync) == 3
    child_file(tmp_path, sync, captured={"insert": 4})  # lower: not decreased, and the base of what comes next
    assert figures.read()
    assert captured(sync, "insert") == 7
    child_file(tmp_path, sync, captured={"insert": 6})
    assert figures.read()
    assert captured(sync, "insert") == 9


def test_progress_is_one_once_the_snapshot_is_done(tmp_path: Path) -> None:
    sync = f"s_{uuid.uuid4().hex[:8]}"
    figures = ChildMetrics(tmp_path, sync, PID)
    progress = ("sluice_cdc_snapshot_progress_ratio", sync)
    child_file(tmp_path, sync, snapshot_rows=30, snapshot_total=None, state="snapshotting")  # no estimate yet
    assert figures.read() and value(*progress) == 0
    child_file(tmp_path, sync, snapshot_rows=300, snapshot_total=200, state="snapshotting")  # the estimate was low
    assert figures.read() and value(*progress) == 1
    child_file(tmp_path, sync, snapshot_rows=0, snapshot_done=True, state="streaming")  # an empty table
    assert figures.read() and value(*progress) == 1
    child_file(tmp_path, sync, snapshot_rows=50, snapshot_total=200, snapshot_done=True, state="snapshotting")  # a resync
    assert figures.read() and value(*progress) == 0.25


def test_a_table_the_child_stopped_is_stopped_here_until_it_resumes(tmp_path: Path) -> None:
    sync = f"s_{uuid.uuid4().hex[:8]}"
    here: set[tuple[str, str]] = set()
    figures = ChildMetrics(tmp_path, sync, PID, lambda direction, table: (direction, table) in here)
    stopped = ("sluice_cdc_table_stopped", sync)
    child_file(tmp_path, sync, state="streaming")
    assert figures.read() and value(*stopped) == 0
    child_file(tmp_path, sync, state="error", error="boom")
    assert figures.read() and value(*stopped) == 1
    child_file(tmp_path, sync, state="streaming")
    assert figures.read() and value(*stopped) == 0
    child_file(tmp_path, sync, state="error", error="boom")
    assert figures.read() and value(*stopped) == 1
    here.add((DIRECTION, "app.emp"))  # this process's apply stopped it too: it stays stopped
    child_file(tmp_path, sync, state="streaming")
    assert figures.read() and value(*stopped) == 1


def test_only_the_childs_whole_file_is_read(tmp_path: Path) -> None:
    sync = f"s_{uuid.uuid4().hex[:8]}"
    figures = ChildMetrics(tmp_path, sync, PID)
    assert not figures.read()  # no file yet
    child_file(tmp_path, sync, pid=PID + 1, captured={"insert": 9})  # an earlier run's
    assert not figures.read()
    (status_dir(tmp_path) / f"{sync}.capture.json").write_text('{"name": "')
    assert not figures.read()
    assert captured(sync, "insert") in (None, 0.0)


def test_the_watch_mirrors_while_the_child_runs_and_once_more_when_it_ended(tmp_path: Path) -> None:
    sync = f"s_{uuid.uuid4().hex[:8]}"
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        figures = ChildMetrics(tmp_path, sync, child.pid, every_s=3600)
        ended: list[bool] = []
        running = _watch_child(child, True, lambda: ended.append(True), figures)
        child_file(tmp_path, sync, pid=child.pid, captured={"insert": 1})
        assert running() and captured(sync, "insert") == 1  # the first poll reads
        child_file(tmp_path, sync, pid=child.pid, captured={"insert": 2})
        assert running() and captured(sync, "insert") == 1  # not before the next status interval
        child_file(tmp_path, sync, pid=child.pid, captured={"insert": 5}, state="stopped")
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()
    assert not running() and captured(sync, "insert") == 5  # its last file, read once it ended
    assert not ended  # --once: a child that ends cleanly does not stop this process


def test_the_capture_records_a_finished_snapshot_in_the_status(tmp_path: Path) -> None:
    state = SyncState("s1", "my", "pg", "one-way", ["capture:my"])
    state.snapshot_rows(DIRECTION, "app.emp", 0, 0)
    assert not state.snapshot_status().tables[0].snapshot_done
    state.snapshot_done(DIRECTION, "app.emp")
    write_status(tmp_path, state.snapshot_status(), "capture")
    apply = TableStatus(source_table="app.emp", target_table="public.emp", direction=DIRECTION, state="streaming")
    write_status(
        tmp_path,
        SyncStatus(name="s1", source="my", target="pg", direction="one-way", roles=["apply:pg"], tables=[apply]),
        "apply",
    )
    merged = read_status(tmp_path, "s1")
    assert merged is not None and [t.snapshot_done for t in merged.tables] == [True]
    assert msgspec.json.decode((status_dir(tmp_path) / "s1.capture.json").read_bytes())["tables"][0]["snapshot_done"] is True
