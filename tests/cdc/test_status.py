"""Status files of a sync and their merge (:func:`sluice.cdc.status.read_status`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec

from sluice.cdc.status import SyncStatus, TableStatus, read_status, status_dir, write_status


def status(roles: list[str], tables: list[TableStatus], state: str = "streaming") -> SyncStatus:
    return SyncStatus(name="s1", source="src", target="dst", direction="one-way", state=state, roles=roles, tables=tables)  # type: ignore[arg-type]


def row(**kw: object) -> TableStatus:
    return TableStatus(source_table="app.emp", target_table="public.emp", direction="src -> dst", **kw)  # type: ignore[arg-type]


def test_split_processes_show_each_table_once_with_counts_from_each_role(tmp_path: Path) -> None:
    capture = row(state="streaming", captured={"snapshot": 5, "insert": 2}, snapshot_rows=5, snapshot_total=5)
    apply = row(state="snapshotting", applied={"snapshot": 5}, conflicts=1, dead_letters=2, lag_s=0.5, position="0/1")
    other = TableStatus(source_table="app.dept", target_table="public.dept", direction="src -> dst")
    write_status(tmp_path, status(["capture:src"], [capture, msgspec.structs.replace(other, state="streaming")]), "capture")
    write_status(tmp_path, status(["apply:dst"], [apply, other], state="snapshotting"), "apply")
    merged = read_status(tmp_path, "s1")
    assert merged is not None and len(merged.tables) == 2
    emp, dept = sorted(merged.tables, key=lambda t: t.source_table != "app.emp")
    assert emp.captured == {"snapshot": 5, "insert": 2} and emp.snapshot_rows == 5
    assert emp.applied == {"snapshot": 5} and (emp.conflicts, emp.dead_letters, emp.lag_s) == (1, 2, 0.5)
    assert emp.position == "0/1" and emp.state == "streaming"
    assert dept.state == "streaming"
    assert merged.state == "streaming" and sorted(merged.roles) == ["apply:dst", "capture:src"]


def test_merged_state_error_wins_and_capture_snapshotting_shows(tmp_path: Path) -> None:
    write_status(tmp_path, status(["capture:src"], [row(state="snapshotting")]), "capture")
    write_status(tmp_path, status(["apply:dst"], [row(state="streaming")]), "apply")
    merged = read_status(tmp_path, "s1")
    assert merged is not None and [t.state for t in merged.tables] == ["snapshotting"]
    write_status(tmp_path, status(["apply:dst"], [row(state="error", error="boom")]), "apply")
    merged = read_status(tmp_path, "s1")
    assert merged is not None and [(t.state, t.error) for t in merged.tables] == [("error", "boom")]


def _dead_pid() -> int:
    """The pid of a process that has exited."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(done.stdout)


def _write(folder: Path, suffix: str, sync: SyncStatus, at: float, pid: int) -> None:
    """A status file as a process of ``pid`` wrote it at ``at`` (seconds since the epoch)."""
    sync.updated_at, sync.pid = at, pid
    (status_dir(folder)).mkdir(parents=True, exist_ok=True)
    (status_dir(folder) / (f"s1.{suffix}.json" if suffix else "s1.json")).write_bytes(msgspec.json.encode(sync))


def test_a_finished_once_run_is_left_out_once_a_newer_complete_process_reports(tmp_path: Path) -> None:
    """``sluice sync --once`` (split capture and apply files, process gone), then ``sluice serve --sync``: the
    served sync's own file is the status; roles appear once."""
    gone = _dead_pid()
    _write(tmp_path, "capture", status(["capture:src"], [row(captured={"insert": 3})], "stopped"), 100.0, gone)
    _write(tmp_path, "apply", status(["apply:dst"], [row(applied={"insert": 3}, position="0/A")], "stopped"), 100.0, gone)
    _write(tmp_path, f"apply.{gone}", status(["apply:dst"], [row(applied={"insert": 1}, position="0/B")], "stopped"), 90.0, gone)
    served = status(["capture:src", "apply:dst"], [row(captured={"insert": 7}, applied={"insert": 7}, position="0/F")])
    _write(tmp_path, "", served, 200.0, os.getpid())
    merged = read_status(tmp_path, "s1")
    assert merged is not None and merged.state == "streaming"
    assert merged.roles == ["capture:src", "apply:dst"]
    assert [(t.position, t.applied, t.captured) for t in merged.tables] == [("0/F", {"insert": 7}, {"insert": 7})]


def test_newer_files_win_per_role_and_running_processes_are_kept(tmp_path: Path) -> None:
    """An older complete file of a stopped serve, then a running apply-only process: its newer apply counts win
    for the table, the capture counts stay the complete file's; a running process's file is never left out."""
    gone = _dead_pid()
    old = status(["capture:src", "apply:dst"], [row(captured={"insert": 4}, applied={"insert": 4}, position="0/4")], "stopped")
    _write(tmp_path, "", old, 100.0, gone)
    _write(tmp_path, "apply", status(["apply:dst"], [row(applied={"insert": 9}, position="0/9")]), 200.0, os.getpid())
    merged = read_status(tmp_path, "s1")
    assert merged is not None and merged.roles == ["capture:src", "apply:dst"]
    [table] = merged.tables
    assert (table.position, table.applied, table.captured) == ("0/9", {"insert": 9}, {"insert": 4})
    assert merged.state == "streaming"
    # a newer complete file no longer hides the running apply process's
    _write(tmp_path, "", old, 300.0, gone)
    merged = read_status(tmp_path, "s1")
    assert merged is not None and sorted(merged.roles) == ["apply:dst", "capture:src"]


def test_a_process_killed_without_stopping_shows_as_gone_not_running(tmp_path: Path) -> None:
    """``kill -9`` leaves the file saying ``streaming``: its pid gone from this host, it is shown stopped (it
    used to read as running); a live process, or one of another host, is taken as its file says."""
    gone = _dead_pid()
    _write(tmp_path, "", status(["capture:src", "apply:dst"], [row(state="streaming")]), 100.0, gone)
    merged = read_status(tmp_path, "s1")
    assert merged is not None and (merged.state, merged.gone, merged.pid) == ("stopped", True, gone)
    elsewhere = status(["capture:src", "apply:dst"], [row(state="streaming")])
    elsewhere.host = "another-host"
    _write(tmp_path, "", elsewhere, 100.0, gone)
    merged = read_status(tmp_path, "s1")
    assert merged is not None and (merged.state, merged.gone) == ("streaming", False)
    _write(tmp_path, "", status(["capture:src", "apply:dst"], [row(state="streaming")]), 100.0, os.getpid())
    merged = read_status(tmp_path, "s1")
    assert merged is not None and (merged.state, merged.gone) == ("streaming", False)


def test_split_processes_one_killed_the_other_running_shows_the_live_one(tmp_path: Path) -> None:
    """The merge rules hold: a gone capture's file is like a finished run's next to a running apply process."""
    gone = _dead_pid()
    _write(tmp_path, "capture", status(["capture:src"], [row(state="streaming", captured={"insert": 2})]), 100.0, gone)
    _write(tmp_path, "apply", status(["apply:dst"], [row(state="streaming", applied={"insert": 2})]), 101.0, os.getpid())
    merged = read_status(tmp_path, "s1")
    assert merged is not None and (merged.state, merged.gone) == ("streaming", False)
    assert merged.tables[0].captured == {"insert": 2} and merged.tables[0].applied == {"insert": 2}
    _write(tmp_path, "apply", status(["apply:dst"], [row(state="streaming")]), 101.0, gone)
    merged = read_status(tmp_path, "s1")
    assert merged is not None and (merged.state, merged.gone) == ("stopped", True)


def test_a_killed_parent_whose_capture_child_stopped_cleanly_shows_as_gone(tmp_path: Path) -> None:
    """``kill -9`` of the parent of a ``--processes 2`` run: its apply file says ``streaming`` (pid gone), the capture
    child, stopped by its parent's death, wrote ``stopped``. Nothing runs: "not running (pid N gone)", N the parent."""
    parent, child = _dead_pid(), _dead_pid()
    _write(tmp_path, "apply", status(["apply:dst"], [row(state="streaming", applied={"insert": 2})]), 100.0, parent)
    _write(tmp_path, "capture", status(["capture:src"], [row(state="streaming")], "stopped"), 101.0, child)
    merged = read_status(tmp_path, "s1")
    assert merged is not None and (merged.state, merged.gone, merged.pid) == ("stopped", True, parent)
    # Both stopped cleanly: not gone.
    _write(tmp_path, "apply", status(["apply:dst"], [row(state="streaming")], "stopped"), 100.0, parent)
    merged = read_status(tmp_path, "s1")
    assert merged is not None and (merged.state, merged.gone) == ("stopped", False)
