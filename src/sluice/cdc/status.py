"""What a running sync reports: per table, its state, position, lag and counts (``sluice sync status``, ``GET /syncs``).

A running ``sluice sync`` writes its :class:`SyncStatus` as JSON to ``<project>/.sluice/syncs/<name>.json``
about once a second (written to a temporary file, then renamed, so readers never see half a file);
``sluice sync status`` and ``sluice serve`` read it there. A process that hosts only capture or only apply
(on Kafka, on separate machines) writes its half; :func:`read_status` merges the files of one sync. Several
apply processes of a partitioned sync (``partitions: N``) each write ``<name>.apply.<pid>.json``, summed per
table by :func:`combine_apply` (lag: the most behind); a start removes the files of such processes that are
gone (:func:`forget_dead_applies`).

A process killed without a clean stop (``kill -9``, a crash) leaves its file saying ``streaming``. Each file
records the host that wrote it; :func:`read_status` shows a file whose process is gone from this host as
``stopped`` with ``gone`` set (``sluice sync status``: "not running (pid N gone)") before the merge, whose
rules then treat it like the file of a finished run; the merged status is ``gone`` when no process runs any
more and one of them is gone (a ``--processes 2`` parent killed with -9: its capture child then stops cleanly).
A file of another host is taken as it says.

Files of earlier runs are left out (:func:`current_statuses`): one whose process no longer runs is left out once
newer files stand for each of its roles, of a process running now or of another layout (an old
``<name>.apply.json`` after a partitioned run's ``.apply.<pid>.json``). The merged status then tells per process
whether it runs (``processes``, ``roles_not_running``), and no table reads ``streaming`` when nothing streams it
(:func:`mark_tables`): with no process of the sync running it is ``stopped``; while one role runs and the other does
not, a table that role serves is ``stopped`` with a ``note`` naming it and no lag (unknown).
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import time
from pathlib import Path
from typing import Literal

import msgspec

TableState = Literal["waiting", "snapshotting", "streaming", "stopped", "error"]
_FIRST_STATE: tuple[TableState, ...] = ("error", "snapshotting", "streaming", "stopped")
"""Of two apply processes' states of one table, the first of these either has wins (:func:`combine_apply`)."""


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
    snapshot_done: bool = False
    """A snapshot of the table ended in this process's run (its progress is 1; set by the process that captures)."""
    note: str = ""
    """Set by :func:`read_status`: why the table does not stream though a process of the sync runs (``apply not
    running: pid 12 gone``)."""


class ProcessStatus(msgspec.Struct):
    """One process of a sync whose status file :func:`read_status` kept."""

    roles: list[str]
    pid: int
    state: str
    running: bool
    """Its file says it runs (not ``stopped`` or ``error``), and, on this host, its pid runs."""
    gone: bool = False
    """Killed or crashed: its file said it ran, its pid is gone (:func:`mark_gone`)."""
    host: str = ""
    updated_at: float = 0.0


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
    host: str = ""
    """The host name of the process that wrote the file (empty: a file written before hosts were recorded,
    taken as this host's)."""
    gone: bool = False
    """Set by :func:`read_status`: the process is no longer running on this host though its file did not say it
    stopped (killed, crashed); ``state`` is then ``stopped``. Merged: no process of the sync runs any more and one
    of them is gone (``pid`` is then its)."""
    processes: list[ProcessStatus] = msgspec.field(default_factory=list)
    """Set by :func:`read_status`: each process whose file the merge took, oldest file first, and whether it runs."""
    roles_not_running: list[str] = msgspec.field(default_factory=list)
    """Set by :func:`read_status`: the sync's roles (those the files list, and ``capture:``/``apply:`` of each table's
    direction) that no running process has; every role when the sync does not run."""


def status_dir(work_dir: Path) -> Path:
    """``<project>/.sluice/syncs``."""
    return work_dir / "syncs"


def status_file(work_dir: Path, name: str, role_suffix: str = "") -> Path:
    """``syncs/<name>[.<role_suffix>].json``: where :func:`write_status` writes the status of sync ``name``."""
    return status_dir(work_dir) / (f"{name}.{role_suffix}.json" if role_suffix else f"{name}.json")


def with_path(message: str, path: str) -> str:
    """``message`` with the ``sluice sync`` commands it advises written for the project at ``path`` (shell-quoted):
    the sync's modules write ``PATH``, explained as "(PATH: the project)", in the errors they store (the target's
    stop record, the status file), which any process may show; the processes that know the path show it."""
    shown = shlex.quote(path)
    return re.sub(r"(sluice sync (?:resync )?)PATH\b", lambda m: m.group(1) + shown, message.replace(" (PATH: the project)", ""))


def write_status(work_dir: Path, status: SyncStatus, role_suffix: str = "") -> Path:
    """Write ``status`` atomically to ``syncs/<name>[.<role_suffix>].json``; returns the path."""
    folder = status_dir(work_dir)
    folder.mkdir(parents=True, exist_ok=True)
    status.updated_at = time.time()
    status.host = socket.gethostname()
    path = status_file(work_dir, status.name, role_suffix)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(msgspec.json.encode(status))
    tmp.replace(path)
    return path


def read_status(work_dir: Path, name: str) -> SyncStatus | None:
    """The status of sync ``name`` merged from every file its processes wrote, or None if none did.

    Files are merged oldest first (by ``updated_at``), so of two files reporting the same role of a table the
    newer wins; a table both a capture-only and an apply-only process report is one row (:func:`merge_tables`).
    Files of earlier runs are left out first (:func:`current_statuses`). ``roles`` lists each role once;
    ``processes`` tells which of the files' processes run, and :func:`mark_tables` shows the tables a role that
    does not run serves as not streaming. ``pid`` is a running process's (one that applies, the ``sluice sync``
    a user started, before a capture child), else the newest file's, or, ``gone``, the killed process's."""
    folder = status_dir(work_dir)
    files = sorted(folder.glob(f"{name}.json")) + sorted(folder.glob(f"{name}.*.json"))
    found: list[tuple[str, SyncStatus]] = []
    for path in files:
        try:
            found.append((_layout(path.name, name), mark_gone(msgspec.json.decode(path.read_bytes(), type=SyncStatus))))
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            continue
    statuses = current_statuses(found)
    processes = [ProcessStatus(list(s.roles), s.pid, s.state, _live(s), s.gone, s.host, s.updated_at) for s in statuses]
    applies = [status for status in statuses if _only(status.roles, "apply")]
    if len(applies) > 1:  # several apply processes of one partitioned sync: one apply status
        first = applies[0]
        for other in applies[1:]:
            first.tables = combine_apply(first.tables, other.tables)
            first.roles = sorted(set(first.roles) | set(other.roles))
            first.updated_at = max(first.updated_at, other.updated_at)
            first.gone = first.gone and other.gone
            if other.state == "error" or first.state == "stopped":
                first.state, first.error = other.state, other.error or first.error
        statuses = [status for status in statuses if status not in applies[1:]]
    killed = [status for status in statuses if status.gone]
    ended = all(status.gone or status.state in ("stopped", "error") for status in statuses)
    merged: SyncStatus | None = None
    for status in statuses:
        if merged is None:
            merged = status
            continue
        role = "capture" if _only(status.roles, "capture") else "apply" if _only(status.roles, "apply") else ""
        merged.roles = list(dict.fromkeys([*merged.roles, *status.roles]))
        merged.tables = merge_tables(merged.tables, status.tables, role)
        merged.updated_at = max(merged.updated_at, status.updated_at)
        merged.host = status.host or merged.host  # oldest first: the newest file's
        if status.state == "error":
            merged.state, merged.error = status.state, status.error
        elif merged.state not in ("error", "stopped") and status.state != "stopped":
            states = {t.state for t in merged.tables}
            merged.state = "snapshotting" if "snapshotting" in states else "streaming" if merged.tables else "starting"
        elif status.state != "stopped" and merged.state == "stopped":  # a newer live process after a finished one
            merged.state, merged.error = status.state, status.error
    if merged is not None:
        merged.roles = list(dict.fromkeys(merged.roles))
        merged.processes = processes
        # No process runs any more and one was killed: the parent of a ``--processes 2`` run killed with -9, whose
        # capture child then stopped cleanly, is as gone as a killed ``--processes 1`` run (its pid is shown).
        merged.gone = ended and bool(killed)
        merged.pid = killed[-1].pid if merged.gone else _shown_pid(processes)
        mark_tables(merged)
    return merged


def mark_gone(status: SyncStatus) -> SyncStatus:
    """``status`` as ``stopped`` with ``gone`` set when it says its process runs (not ``stopped`` or ``error``)
    but that process (its pid known), written on this host (or on an unknown one), is no longer running
    (:func:`running`)."""
    live = status.state not in ("stopped", "error") and status.pid > 0  # 0: the pid is not known
    if live and status.host in ("", socket.gethostname()) and not running(status.pid):
        status.state, status.gone = "stopped", True
    return status


def current_statuses(files: list[tuple[str, SyncStatus]]) -> list[SyncStatus]:
    """The statuses of ``files`` (``(layout, status)``, the layout of :func:`status_file`'s suffix, ``apply.*`` for
    any ``apply.<pid>``) that describe the sync now, oldest first (by ``updated_at``).

    A file whose process runs (its file says so, see :func:`mark_gone`) is kept. One whose process does not is
    left out when, for each of its roles (capture, apply; a file listing none: both), a newer file has the role
    and either runs or has another layout: a finished ``--once`` run's split files once ``sluice serve --sync``
    (one process, both roles) reports, an old ``<sync>.apply.json`` once a partitioned run's ``.apply.<pid>.json``
    report, a killed apply process once another of the same partitioned run took its partitions. Kept: the files
    of the newest run of each role, a killed role's next to the live other one (then shown as not running), and
    the several ``.apply.<pid>.json`` of one partitioned run that stopped."""
    ordered = sorted(files, key=lambda file: file[1].updated_at)

    def newer(kind: str, layout: str, status: SyncStatus) -> bool:
        return any(
            other.updated_at > status.updated_at and kind in _kinds(other) and (_live(other) or shape != layout)
            for shape, other in ordered
        )

    return [
        status for layout, status in ordered if _live(status) or not all(newer(kind, layout, status) for kind in _kinds(status))
    ]


def mark_tables(status: SyncStatus) -> None:
    """Mark the tables of merged ``status`` that do not stream though their files say so, and set
    ``roles_not_running``. A table's roles are ``capture:<source side>`` and ``apply:<target side>`` of its
    direction. No process of the sync runs: a ``streaming`` or ``waiting`` table is ``stopped`` (``error`` and
    ``snapshotting`` stay, as an unfinished snapshot's progress does), its lag dropped (unknown) when its apply
    process is gone (killed), kept as the run ended when it stopped. One role runs and another does not: the
    tables the other serves are ``stopped`` likewise (``error``, ``snapshotting`` stay), ``note`` names the role
    that does not run (``apply not running: pid 12 gone``), and their lag is unknown (None): apply's stays 0 once
    it drained what a dead capture published. A running process whose file lists no roles is taken for all."""
    if any(not process.roles for process in status.processes if process.running):
        status.roles_not_running = []
        return
    live = {role for process in status.processes if process.running for role in process.roles}
    roles = list(dict.fromkeys([*status.roles, *(role for table in status.tables for role in _table_roles(table))]))
    status.roles_not_running = [role for role in roles if role not in live]
    for table in status.tables:
        missing = [role for role in _table_roles(table) if role not in live]
        if live and not missing:
            continue
        if live:
            table.note = "; ".join(_not_running(role, status.processes) for role in missing)
            table.lag_s = None
        elif any(process.gone for role in _table_roles(table)[1:] for process in _of_role(role, status.processes)):
            table.lag_s = None
        if table.state in ("streaming", "waiting"):
            table.state = "stopped"


def _layout(file_name: str, name: str) -> str:
    """The layout of a status file of sync ``name``: its suffix, ``apply.*`` for any ``apply.<pid>``."""
    suffix = file_name.removeprefix(name).removesuffix(".json").removeprefix(".")
    kind, _, pid = suffix.partition(".")
    return f"{kind}.*" if pid.isdigit() else suffix


def _live(status: SyncStatus) -> bool:
    """Whether ``status`` says its process runs (after :func:`mark_gone`, false for a killed one)."""
    return status.state not in ("stopped", "error")


def _kinds(status: SyncStatus) -> set[str]:
    """``capture`` and/or ``apply``: what ``status``'s process runs (a file listing no roles: both)."""
    kinds = {role.partition(":")[0] for role in status.roles} & {"capture", "apply"}
    return kinds or {"capture", "apply"}


def _table_roles(table: TableStatus) -> list[str]:
    """``[capture:<source side>, apply:<target side>]`` of ``table``'s direction (none if it names no sides)."""
    source, arrow, target = table.direction.partition(" -> ")
    return [f"capture:{source}", f"apply:{target}"] if arrow else []


def _of_role(role: str, processes: list[ProcessStatus]) -> list[ProcessStatus]:
    return [process for process in processes if role in process.roles or not process.roles]


def _not_running(role: str, processes: list[ProcessStatus]) -> str:
    """``apply not running: pid 12 gone``: ``role`` and its newest process (none: ``apply not running``)."""
    kind = role.partition(":")[0]
    ended = [process for process in _of_role(role, processes) if not process.running]
    if not ended:
        return f"{kind} not running"
    last = ended[-1]
    why = "gone" if last.gone else last.state
    return f"{kind} not running: pid {last.pid} {why}" if last.pid > 0 else f"{kind} not running ({why})"


def _shown_pid(processes: list[ProcessStatus]) -> int:
    """The pid a merged status shows: of the running processes (none: of all), one that applies (the ``sluice
    sync`` a user started, not its capture child), else any; the newest."""
    candidates = [process for process in processes if process.running] or processes
    applying = [process for process in candidates if any(role.startswith("apply:") for role in process.roles)]
    chosen = (applying or candidates)[-1:]
    return chosen[0].pid if chosen else 0


def running(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (0, unknown: False)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _only(roles: list[str], role: str) -> bool:
    return bool(roles) and all(r.startswith(f"{role}:") for r in roles)


def combine_apply(first: list[TableStatus], second: list[TableStatus]) -> list[TableStatus]:
    """The rows of two apply processes of one sync (each applying some partitions of the tables), one row per
    ``(direction, source_table)``: applied, conflicts and dead letters summed; lag and position of the more
    behind; state ``error`` if either is, else ``snapshotting``, else ``streaming``, else ``waiting``."""
    out = {(t.direction, t.source_table): t for t in first}
    for row in second:
        key = (row.direction, row.source_table)
        other = out.get(key)
        if other is None:
            out[key] = row
            continue
        behind = row if (row.lag_s or 0.0) > (other.lag_s or 0.0) else other
        applied = dict(other.applied)
        for op, count in row.applied.items():
            applied[op] = applied.get(op, 0) + count
        lags = [lag for lag in (row.lag_s, other.lag_s) if lag is not None]
        states = {row.state, other.state}
        state = next((s for s in _FIRST_STATE if s in states), "waiting")
        out[key] = msgspec.structs.replace(
            other,
            target_table=other.target_table or row.target_table,
            state=state,
            error=other.error or row.error,
            position=behind.position or other.position or row.position,
            lag_s=max(lags) if lags else None,
            applied=applied,
            conflicts=other.conflicts + row.conflicts,
            dead_letters=other.dead_letters + row.dead_letters,
            invalid_dates=max(other.invalid_dates, row.invalid_dates),
        )
    return list(out.values())


def forget_dead_applies(work_dir: Path, name: str) -> None:
    """Remove ``<name>.apply.<pid>.json`` files whose process no longer runs on this machine (killed, or stopped:
    a stopped run's counts are its own; the new run reports afresh)."""
    for path in status_dir(work_dir).glob(f"{name}.apply.*.json"):
        pid = path.name.removeprefix(f"{name}.apply.").removesuffix(".json")
        if pid.isdigit() and not running(int(pid)):
            path.unlink(missing_ok=True)


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
            snapshot_done=capture.snapshot_done,
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
