"""Status files of a sync and their merge (:func:`sluice.cdc.status.read_status`)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from sluice.cdc.status import SyncStatus, TableStatus, read_status, write_status


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
