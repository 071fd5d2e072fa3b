"""Status files of a sync and their merge (:func:`sluice.cdc.status.read_status`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
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


def test_split_roles_with_one_killed_say_which_role_runs_and_its_tables_do_not_stream(tmp_path: Path) -> None:
    """``--role capture`` and ``--role apply`` (or ``--processes 2``), one killed with -9: the merge used to copy the
    live process's state, keep the dead one's pid and show its tables ``streaming`` with lag 0.0 (a trial's finding)."""
    dead, live = _dead_pid(), os.getpid()
    _write(tmp_path, "capture", status(["capture:src"], [row(state="streaming", captured={"insert": 9})]), 100.0, live)
    _write(tmp_path, "apply", status(["apply:dst"], [row(state="streaming", applied={"insert": 2}, lag_s=0.0)]), 99.0, dead)
    merged = read_status(tmp_path, "s1")
    assert merged is not None and (merged.state, merged.gone, merged.pid) == ("streaming", False, live)
    assert [(p.roles, p.pid, p.running, p.gone) for p in merged.processes] == [
        (["apply:dst"], dead, False, True),
        (["capture:src"], live, True, False),
    ]
    assert merged.roles_not_running == ["apply:dst"]
    [table] = merged.tables
    assert (table.state, table.note, table.lag_s) == ("stopped", f"apply not running: pid {dead} gone", None)
    assert (table.captured, table.applied) == ({"insert": 9}, {"insert": 2})
    # The capture killed, the apply running: apply drained the topic (lag 0.0), which says nothing of the source.
    _write(tmp_path, "capture", status(["capture:src"], [row(state="streaming")]), 99.0, dead)
    _write(tmp_path, "apply", status(["apply:dst"], [row(state="streaming", lag_s=0.0)]), 100.0, live)
    merged = read_status(tmp_path, "s1")
    assert merged is not None and (merged.state, merged.gone, merged.pid) == ("streaming", False, live)
    assert merged.roles_not_running == ["capture:src"]
    [table] = merged.tables
    assert (table.state, table.note, table.lag_s) == ("stopped", f"capture not running: pid {dead} gone", None)
    # Both running: nothing is marked.
    _write(tmp_path, "capture", status(["capture:src"], [row(state="streaming")]), 100.0, live)
    merged = read_status(tmp_path, "s1")
    assert merged is not None and merged.roles_not_running == [] and all(p.running for p in merged.processes)
    assert [(t.state, t.note, t.lag_s) for t in merged.tables] == [("streaming", "", 0.0)]


def test_status_prints_which_role_runs_and_why_a_table_does_not_stream(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sluice.cli.main import cli

    (tmp_path / "sluice.yaml").write_text(
        "connections:\n  src: mysql://u:p@127.0.0.1:1/shop\n  dst: postgresql://u@127.0.0.1:1/wh\n"
        "syncs:\n  - {name: s1, source: src, target: dst, tables: [emp]}\n"
    )
    work, dead, live = tmp_path / ".sluice", _dead_pid(), os.getpid()
    _write(work, "capture", status(["capture:src"], [row(state="streaming")]), time.time(), live)
    _write(work, "apply", status(["apply:dst"], [row(state="streaming", lag_s=0.0)]), time.time() - 5, dead)
    shown = CliRunner().invoke(cli, ["sync", "status", str(tmp_path)], terminal_width=300)
    assert shown.exit_code == 0, shown.output
    first = shown.output.splitlines()[0]
    assert first.startswith(f"sync s1: streaming (one-way; capture running, pid {live}; apply not running: pid {dead} gone;")
    assert f"stopped (apply not running: pid {dead} gone)" in shown.output and " 0.0 " not in shown.output
    answer = msgspec.json.decode(CliRunner().invoke(cli, ["sync", "status", str(tmp_path), "--json"]).output)
    assert answer["roles_not_running"] == ["apply:dst"] and answer["pid"] == live
    assert [(p["roles"], p["running"], p["gone"]) for p in answer["processes"]] == [
        (["apply:dst"], False, True),
        (["capture:src"], True, False),
    ]
    assert answer["tables"][0]["state"] == "stopped" and "lag_s" not in answer["tables"][0]


def test_a_killed_apply_of_a_partitioned_sync_is_left_out_once_another_runs(tmp_path: Path) -> None:
    """``partitions: N``: the apply process left took the killed one's partitions; its frozen file is older."""
    dead, live = _dead_pid(), os.getpid()
    _write(tmp_path, "capture", status(["capture:src"], [row(state="streaming")]), 101.0, live)
    _write(
        tmp_path, f"apply.{dead}", status(["apply:dst"], [row(applied={"insert": 5}, position="b.1:5", lag_s=9.0)]), 90.0, dead
    )
    _write(
        tmp_path, f"apply.{live}", status(["apply:dst"], [row(applied={"insert": 7}, position="b.1:9", lag_s=0.1)]), 100.0, live
    )
    merged = read_status(tmp_path, "s1")
    assert merged is not None and len(merged.tables) == 1
    [table] = merged.tables
    assert (table.state, table.applied, table.position, table.lag_s) == ("streaming", {"insert": 7}, "b.1:9", 0.1)
    assert [p.pid for p in merged.processes] == [live, live] and merged.roles_not_running == []


def test_an_old_file_of_another_layout_is_left_out(tmp_path: Path) -> None:
    """A non-partitioned run's ``s1.apply.json`` next to a later partitioned run's ``.apply.<pid>.json``: it was
    summed into every status from then on, its position, counts and pid (a trial's finding)."""
    old, dead = _dead_pid(), _dead_pid()
    stale = row(applied={"insert": 489, "update": 2520}, position="binlog.000113:104759820")
    _write(tmp_path, "apply", status(["apply:dst"], [stale], "stopped"), 50.0, old)
    _write(tmp_path, "capture", status(["capture:src"], [row(state="streaming", captured={"snapshot": 3})]), 200.0, os.getpid())
    for pid, applied in ((os.getpid(), 2), (dead, 1)):  # two apply processes of this run, one killed earlier
        part = row(state="streaming", applied={"snapshot": applied}, position=f"binlog.000122:{applied}")
        _write(tmp_path, f"apply.{pid}", status(["apply:dst"], [part]), 190.0 + 5 * applied, pid)
    merged = read_status(tmp_path, "s1")
    assert merged is not None and len(merged.tables) == 1
    [table] = merged.tables
    assert table.applied == {"snapshot": 2} and table.position == "binlog.000122:2" and merged.pid == os.getpid()
    assert old not in [p.pid for p in merged.processes]
    # The whole sync stopped cleanly: its last run shows (both apply processes summed), the old file does not.
    for pid, applied in ((os.getpid(), 2), (dead, 1)):
        part = row(state="streaming", applied={"snapshot": applied}, position=f"binlog.000122:{applied}")
        _write(tmp_path, f"apply.{pid}", status(["apply:dst"], [part], "stopped"), 190.0 + 5 * applied, pid)
    _write(tmp_path, "capture", status(["capture:src"], [row(state="streaming")], "stopped"), 200.0, os.getpid())
    merged = read_status(tmp_path, "s1")
    assert merged is not None and merged.state == "stopped" and not merged.gone
    assert sorted(p.pid for p in merged.processes) == sorted([os.getpid(), os.getpid(), dead])
    [table] = merged.tables
    assert (table.state, table.applied, table.position) == ("stopped", {"snapshot": 3}, "binlog.000122:1")
    # The other way round: a partitioned run's files, then a run of one apply process (--processes 2).
    for name in status_dir(tmp_path).glob("s1.*.json"):
        name.unlink()
    _write(tmp_path, f"apply.{dead}", status(["apply:dst"], [row(applied={"insert": 8})], "stopped"), 50.0, dead)
    _write(tmp_path, "apply", status(["apply:dst"], [row(applied={"insert": 1})], "stopped"), 100.0, old)
    _write(tmp_path, "capture", status(["capture:src"], [row(captured={"insert": 1})], "stopped"), 99.0, dead)
    merged = read_status(tmp_path, "s1")
    assert merged is not None and [t.applied for t in merged.tables] == [{"insert": 1}] and merged.pid == old


def test_old_files_give_way_per_role_whatever_the_layout(tmp_path: Path) -> None:
    """A run with both roles in one process after a split run, and the other way round: only the newest run's
    files describe the sync, running or not (nothing runs: the last run's, stopped)."""
    first, second = _dead_pid(), _dead_pid()
    _write(tmp_path, "capture", status(["capture:src"], [row(captured={"insert": 4})], "stopped"), 100.0, first)
    _write(tmp_path, "apply", status(["apply:dst"], [row(applied={"insert": 4})], "stopped"), 101.0, first)
    _write(tmp_path, "", status(["capture:src", "apply:dst"], [row(applied={"insert": 1})], "stopped"), 200.0, second)
    merged = read_status(tmp_path, "s1")
    assert merged is not None and [(t.state, t.applied, t.captured) for t in merged.tables] == [("stopped", {"insert": 1}, {})]
    assert [p.pid for p in merged.processes] == [second]
    _write(tmp_path, "capture", status(["capture:src"], [row(captured={"insert": 6})], "stopped"), 300.0, first)
    _write(tmp_path, "apply", status(["apply:dst"], [row(applied={"insert": 6})], "stopped"), 301.0, first)
    merged = read_status(tmp_path, "s1")
    assert merged is not None and [(t.state, t.applied, t.captured) for t in merged.tables] == [
        ("stopped", {"insert": 6}, {"insert": 6})
    ]
    assert [p.roles for p in merged.processes] == [["capture:src"], ["apply:dst"]] and merged.pid == first
    assert merged.roles_not_running == ["capture:src", "apply:dst"] and merged.state == "stopped"


def test_no_table_reads_streaming_when_no_process_of_the_sync_runs(tmp_path: Path) -> None:
    """After ``--once``, ``snapshot: initial_only`` or a stop the file keeps what the process said (``streaming``);
    the status shows ``stopped``, an error and an unfinished snapshot as they are (a trial's finding)."""
    ended = _dead_pid()
    tables = [
        row(state="streaming", lag_s=0.4),
        TableStatus("app.dept", "public.dept", "src -> dst", state="error", error="boom"),
        TableStatus("app.big", "public.big", "src -> dst", state="snapshotting", snapshot_rows=5, snapshot_total=9),
        TableStatus("app.new", "public.new", "src -> dst", state="waiting"),
    ]
    _write(tmp_path, "", status(["capture:src", "apply:dst"], tables, "stopped"), 100.0, ended)
    merged = read_status(tmp_path, "s1")
    assert merged is not None and (merged.state, merged.gone) == ("stopped", False)
    assert [(t.state, t.lag_s) for t in merged.tables] == [
        ("stopped", 0.4),  # the lag as the run ended
        ("error", None),
        ("snapshotting", None),
        ("stopped", None),
    ]
    assert [t.note for t in merged.tables] == ["", "", "", ""]  # the first line says nothing runs
    assert merged.tables[2].snapshot_rows == 5 and merged.roles_not_running == ["capture:src", "apply:dst"]
    on_disk = msgspec.json.decode((status_dir(tmp_path) / "s1.json").read_bytes(), type=SyncStatus)
    assert on_disk.tables[0].state == "streaming"  # the runtime's own word is kept
    # Killed: the lag it last wrote is unknown now.
    _write(tmp_path, "", status(["capture:src", "apply:dst"], [row(state="streaming", lag_s=0.4)]), 100.0, ended)
    merged = read_status(tmp_path, "s1")
    assert merged is not None and merged.gone and [(t.state, t.lag_s) for t in merged.tables] == [("stopped", None)]
    # Split roles that both ended (initial_only): stopped too, the pid the apply process's (the one started).
    capture, apply = _dead_pid(), _dead_pid()
    (status_dir(tmp_path) / "s1.json").unlink()
    _write(tmp_path, "capture", status(["capture:src"], [row(state="streaming")], "stopped"), 100.0, capture)
    _write(tmp_path, "apply", status(["apply:dst"], [row(state="streaming")], "stopped"), 101.0, apply)
    merged = read_status(tmp_path, "s1")
    assert merged is not None and [t.state for t in merged.tables] == ["stopped"] and merged.pid == apply
