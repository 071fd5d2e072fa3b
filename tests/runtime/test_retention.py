"""History pruning with a fake clock, on SQLite and PostgreSQL state stores and the embedded bus: what is kept, what
is removed, and the periodic pruner."""

from __future__ import annotations

import time
from pathlib import Path

from tests.state.test_contract import OpenStore, open_store

from helpers import wait_for
from sluice import events as ev
from sluice.bus.embedded import EmbeddedBus
from sluice.bus.names import EVENTS_TOPIC
from sluice.runtime.retention import Pruner, prune_history
from sluice.state.base import BackfillRecord, ObjectState, RunRecord

__all__ = ["open_store"]
DAY = 86400.0
NONE = {"alert_keys": 0, "scheduler_leases": 0}  # nothing of those in these tests


def _publish_run(bus: EmbeddedBus, run_id: str) -> int:
    started = ev.RunStarted(run_id=run_id, project="shop", targets=[1], planned=[1])
    finished = ev.RunFinished(run_id=run_id, status="succeeded", duration_s=1.0)
    offsets = bus.publish(EVENTS_TOPIC, [(run_id, ev.encode(started)), (run_id, ev.encode(finished))])
    return offsets[0]


def _after(moment: float) -> float:
    while time.time() <= moment:  # the next publish is stamped strictly later (microseconds, not a wait)
        pass
    return time.time()


def test_prune_keeps_recent_and_running_history_and_removes_the_rest(open_store: OpenStore, tmp_path: Path) -> None:
    state = open_store()
    bus = EmbeddedBus(tmp_path / "bus.db", retention_days=0)
    try:
        old_offset = _publish_run(bus, "old")
        stuck_offset = _publish_run(bus, "stuck")
        cutoff = _after(time.time())
        new_offset = _publish_run(bus, "new")
        now = cutoff + 30 * DAY  # the fake clock: keep 30 days puts the cutoff between the runs
        objects = [ObjectState(1, "ingest", "loaded")]
        state.create_run(
            RunRecord("old", "shop", "succeeded", now - 40 * DAY, now - 40 * DAY + 5, first_offset=old_offset), objects
        )
        state.create_run(RunRecord("stuck", "shop", "running", now - 35 * DAY, None, first_offset=stuck_offset), objects)
        state.create_run(RunRecord("new", "shop", "failed", now - 1 * DAY, now - DAY + 5, first_offset=new_offset), objects)
        state.create_backfill(BackfillRecord("b-old", "shop", "failed", now - 50 * DAY, now - 45 * DAY), ["2026-01-01"])

        dry = prune_history(state, bus, "shop", 30 * DAY, now=now, dry_run=True)
        assert dry.tables == {"schedule_ticks": 0, "run_objects": 1, "runs": 1, "backfill_dates": 1, "backfills": 1} | NONE
        assert dry.events == 2  # the old run's; the run still going keeps the log from its first event
        assert len(bus.read(EVENTS_TOPIC, 0)) == 6

        state.finish_run("stuck", "cancelled", now - 34 * DAY)
        report = prune_history(state, bus, "shop", 30 * DAY, now=now)
        assert report.tables == {"schedule_ticks": 0, "run_objects": 2, "runs": 2, "backfill_dates": 1, "backfills": 1} | NONE
        assert report.events == 4
        assert [r.run_id for r in state.list_runs("shop")] == ["new"]
        assert [m.offset for m in bus.read(EVENTS_TOPIC, 0)] == [new_offset, new_offset + 1]
        assert "removed 4 event(s) of sluice.events" in report.lines()
    finally:
        bus.close()


def test_prune_keeps_the_events_of_an_interrupted_run_still_in_the_history(open_store: OpenStore, tmp_path: Path) -> None:
    state = open_store()
    bus = EmbeddedBus(tmp_path / "bus.db", retention_days=0)
    try:
        offset = _publish_run(bus, "dead")
        cutoff = _after(time.time())
        now = cutoff + 30 * DAY
        # started 35 days ago, its coordinator gone, marked interrupted by a run started yesterday: resumable
        state.create_run(RunRecord("dead", "shop", "running", now - 35 * DAY, None, first_offset=offset), [])
        assert state.set_run_status("dead", "interrupted", now - DAY, expected="running")
        report = prune_history(state, bus, "shop", 30 * DAY, now=now)
        assert (report.tables["runs"], report.events) == (0, 0)
        assert [m.offset for m in bus.read(EVENTS_TOPIC, 0)] == [offset, offset + 1]
        state.set_run_status("dead", "interrupted", now - 31 * DAY, expected="interrupted")  # marked long ago
        report = prune_history(state, bus, "shop", 30 * DAY, now=now)
        assert (report.tables["runs"], report.events) == (1, 2)
    finally:
        bus.close()


def test_the_pruner_prunes_on_start_and_stops(open_store: OpenStore, tmp_path: Path) -> None:
    state = open_store()
    bus = EmbeddedBus(tmp_path / "bus.db", retention_days=0)
    now = 1_000 * DAY
    state.create_run(RunRecord("old", "shop", "succeeded", now - 3 * DAY, now - 3 * DAY), [])
    state.create_run(RunRecord("new", "shop", "succeeded", now - 1, now), [])
    pruner = Pruner(state, bus, "shop", keep_s=2 * DAY, every_s=3600, clock=lambda: now)
    pruner.start()
    try:
        wait_for(lambda: pruner.last is not None, 30, "the first prune")
    finally:
        pruner.stop()
        bus.close()
    assert [r.run_id for r in state.list_runs("shop")] == ["new"]


def test_check_results_are_pruned_with_the_history_but_not_on_a_dry_run(open_store: OpenStore, tmp_path: Path) -> None:
    from sluice.project.load import load_project
    from sluice.runtime.retention import check_results_pruner
    from sluice.state.base import CheckResult

    (tmp_path / "sluice.yaml").write_text("name: shop\nobjects:\n  - {id: 1001, name: a}\n")
    project = load_project(tmp_path)  # no PostgreSQL warehouse: its check results are kept in the state store
    state = open_store()
    bus = EmbeddedBus(tmp_path / "bus.db", retention_days=0)
    now = 1_000 * DAY
    old, new = (CheckResult("r", "shop", 1001, "a", name, "not_null", "error", "passed") for name in ("old", "new"))
    old.checked_at, new.checked_at = now - 40 * DAY, now - DAY
    state.record_check_results([old, new])
    try:
        prune = check_results_pruner(project, state)
        dry = prune_history(state, bus, "shop", 30 * DAY, now=now, dry_run=True, check_results=prune)
        assert "check_results" not in dry.tables and len(state.check_results("shop")) == 2
        report = prune_history(state, bus, "shop", 30 * DAY, now=now, check_results=prune)
        assert report.tables["check_results"] == 1
        assert [r.check for r in state.check_results("shop")] == ["new"]
    finally:
        bus.close()


def test_sluice_prune_removes_per_date_outputs_written_before_history_dated_outputs(tmp_path: Path) -> None:
    """``history: dated_outputs`` (else ``keep``) bounds how long per-date lake outputs are kept after their last write;
    the latest date's, which the plain output holds, stays whatever its age."""
    import os
    from datetime import datetime

    from click.testing import CliRunner

    from helpers import load, write_yaml
    from sluice.cli.main import cli
    from sluice.lake.dated import held_logical_date
    from sluice.lake.local import LocalLake
    from sluice.runtime.run import RunOptions, run_project

    write_yaml(tmp_path, "history: {keep: 30d, dated_outputs: 2d}\nobjects:\n"
               "  - {id: 1001, name: days, sql: \"select DATE '{{ ds }}' AS day\"}\n")  # fmt: skip
    project = load(tmp_path)
    days = ["2026-01-01", "2026-01-02", "2026-01-03"]
    for day in days:
        run = run_project(project, RunOptions(logical_date=datetime.fromisoformat(f"{day}T00:00:00+00:00")))
        assert run.status == "succeeded"
    lake = LocalLake(project.resolve_lake_path())
    files = [project.resolve_lake_path() / "raw" / f"days.ld-{day.replace('-', '')}T000000Z.parquet" for day in days]
    for file, age_days in zip(files, (3, 1, 3), strict=True):  # the first and the last written 3 days ago
        os.utime(file, (time.time() - age_days * DAY,) * 2, follow_symlinks=False)
    dry = CliRunner().invoke(cli, ["prune", str(tmp_path), "--dry-run"])
    assert dry.exit_code == 0 and "would remove 1 per-date lake output(s)" in dry.output, dry.output
    assert all(file.exists() for file in files)
    pruned = CliRunner().invoke(cli, ["prune", str(tmp_path), "--json"])
    assert pruned.exit_code == 0 and '"dated_outputs": 1' in pruned.output, pruned.output
    assert [file.exists() for file in files] == [False, True, True]
    held = held_logical_date(lake, "raw", "days")
    assert held is not None and held.date().isoformat() == days[-1]
    plain = lake.current_location("raw", "days")
    assert plain is not None and lake.read(plain).read_all().column("day").to_pylist()[0].isoformat() == days[-1]
