"""What a running sync reports: per table, its state, position, lag and counts (``sluice sync status``, ``GET /syncs``).

A running ``sluice sync`` writes its :class:`SyncStatus` as JSON to ``<project>/.sluice/syncs/<name>.json``
about once a second (written to a temporary file, then renamed, so readers never see half a file);
``sluice sync status`` and ``sluice serve`` read it there. A process that hosts only capture or only apply
(on Kafka, on separate machines) writes its half; :func:`read_status` merges the files of one sync.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal

import msgspec

TableState = Literal["waiting", "snapshotting", "streaming", "stopped", "error"]


class TableStatus(msgspec.Struct, omit_defaults=True):
    """One synced table of one direction. Counts are rows; ``lag_s`` is seconds from source commit to applied."""

    source_table: str
    target_table: str
    direction: str
    """``<source side> -> <target side>``."""
    state: TableState = "waiting"
    error: str = ""
    position: str = ""
    """The last applied source position, as the database shows it."""
    lag_s: float | None = None
    applied: dict[str, int] = msgspec.field(default_factory=dict)
    """Rows applied by operation name (snapshot, insert, update, delete, truncate)."""
    captured: dict[str, int] = msgspec.field(default_factory=dict)
    conflicts: int = 0
    dead_letters: int = 0
    invalid_dates: int = 0
    snapshot_rows: int = 0
    snapshot_total: int | None = None
    """Estimated rows of the table when the snapshot started (for progress)."""


class SyncStatus(msgspec.Struct, omit_defaults=True):
    """One sync, as one process sees it. ``updated_at`` is seconds since the epoch."""

    name: str
    source: str
    target: str
    direction: str
    state: Literal["starting", "snapshotting", "streaming", "stopped", "error"] = "starting"
    error: str = ""
    pid: int = 0
    roles: list[str] = msgspec.field(default_factory=list)
    """What this process runs: ``capture:<side>`` and/or ``apply:<side>``."""
    updated_at: float = 0.0
    tables: list[TableStatus] = msgspec.field(default_factory=list)


def status_dir(work_dir: Path) -> Path:
    """``<project>/.sluice/syncs``."""
    return work_dir / "syncs"


def write_status(work_dir: Path, status: SyncStatus, role_suffix: str = "") -> Path:
    """Write ``status`` atomically to ``syncs/<name>[.<role_suffix>].json``; returns the path."""
    folder = status_dir(work_dir)
    folder.mkdir(parents=True, exist_ok=True)
    status.updated_at = time.time()
    path = folder / (f"{status.name}.{role_suffix}.json" if role_suffix else f"{status.name}.json")
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(msgspec.json.encode(status))
    tmp.replace(path)
    return path


def read_status(work_dir: Path, name: str) -> SyncStatus | None:
    """The status of sync ``name`` merged from every file its processes wrote, or None if none did.

    A table both a capture-only and an apply-only process report is one row (:func:`merge_tables`)."""
    folder = status_dir(work_dir)
    files = sorted(folder.glob(f"{name}.json")) + sorted(folder.glob(f"{name}.*.json"))
    merged: SyncStatus | None = None
    for path in files:
        try:
            status = msgspec.json.decode(path.read_bytes(), type=SyncStatus)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            continue
        if merged is None:
            merged = status
            continue
        role = "capture" if _only(status.roles, "capture") else "apply" if _only(status.roles, "apply") else ""
        merged.roles.extend(status.roles)
        merged.tables = merge_tables(merged.tables, status.tables, role)
        merged.updated_at = max(merged.updated_at, status.updated_at)
        if status.state == "error":
            merged.state, merged.error = status.state, status.error
        elif merged.state not in ("error", "stopped") and status.state != "stopped":
            states = {t.state for t in merged.tables}
            merged.state = "snapshotting" if "snapshotting" in states else "streaming" if merged.tables else "starting"
    return merged


def _only(roles: list[str], role: str) -> bool:
    return bool(roles) and all(r.startswith(f"{role}:") for r in roles)


def merge_tables(first: list[TableStatus], second: list[TableStatus], second_role: str) -> list[TableStatus]:
    """The rows of two status files, one row per ``(direction, source_table)``.

    Of a table in both: captured and snapshot counts from the capture row; applied, conflicts, dead letters,
    lag and position from the apply row; the state is ``error`` if either is, else ``snapshotting`` while
    capture snapshots, else ``streaming`` when capture streams and apply has not moved past ``waiting`` /
    ``snapshotting`` yet (it applied the snapshot and no change since), else the apply row's state.
    ``second_role``: ``capture`` or ``apply`` when ``second`` comes from a process running only that role
    (the rows of ``first`` are then the other role's); else a row of ``second`` replaces the one of ``first``."""
    out = {(t.direction, t.source_table): t for t in first}
    for row in second:
        key = (row.direction, row.source_table)
        other = out.get(key)
        if other is None or second_role not in ("capture", "apply"):
            out[key] = row
            continue
        capture, apply = (row, other) if second_role == "capture" else (other, row)
        merged = msgspec.structs.replace(
            apply,
            target_table=apply.target_table or capture.target_table,
            captured=dict(capture.captured),
            snapshot_rows=capture.snapshot_rows,
            snapshot_total=capture.snapshot_total,
            invalid_dates=max(capture.invalid_dates, apply.invalid_dates),
        )
        if capture.state == "error" or apply.state == "error":
            failed = apply if apply.state == "error" else capture
            merged.state, merged.error = "error", failed.error
        elif capture.state == "snapshotting":
            merged.state = "snapshotting"
        elif capture.state == "streaming" and apply.state in ("waiting", "snapshotting"):
            merged.state = "streaming"
        out[key] = merged
    return list(out.values())
