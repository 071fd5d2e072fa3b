"""``sluice backfill`` end to end: real runs of a small project, a process killed mid-backfill and the same command
resuming it without running the succeeded dates again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from helpers import sluice_cli, write_yaml
from sluice.state.sqlite import SqliteStateStore

SLUICE = [sys.executable, "-m", "sluice"]
PROJECT = """
name: bf
objects:
  - {id: 1001, name: raw_a}
  - {id: 2001, name: clean_a, parents: [1001]}
"""


def _runs_by_day(root: Path) -> dict[str, list[str]]:
    store = SqliteStateStore(root / ".sluice" / "state.db")
    try:
        days: dict[str, list[str]] = {}
        for run in store.find_runs("bf", limit=1000):
            assert run.options["trigger"] == "backfill"
            days.setdefault(run.options["logical_date"][:10], []).append(run.status)
        return days
    finally:
        store.close()


def test_a_killed_backfill_is_resumed_by_the_same_command(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "bf", PROJECT)
    args = ["backfill", str(path), "--from", "2026-01-01", "--to", "2026-01-05", "--simulate"]
    # 0.5 s a simulated object: the first date settles, the process is killed during a later one
    with subprocess.Popen([*SLUICE, *args, "--delay-scale", "0.5"], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert first.startswith("[1/5] 2026-01-01T00:00:00+00:00  succeeded")
    before = _runs_by_day(tmp_path / "bf")
    assert before["2026-01-01"] == ["succeeded"]

    again = sluice_cli(*args, "--delay-scale", "0", "--json")
    assert again.returncode == 0, again.stderr
    assert "resuming backfill" in again.stderr
    result = json.loads(again.stdout)
    assert result["status"] == "succeeded" and result["counts"] == {"succeeded": 5}
    after = _runs_by_day(tmp_path / "bf")
    assert after["2026-01-01"] == ["succeeded"]  # not run again
    # the date killed mid-run was continued, not run again: one run a date, none left running
    assert all(statuses == ["succeeded"] for statuses in after.values()), after
    assert sorted(after) == [f"2026-01-0{i}" for i in range(1, 6)]

    listed = sluice_cli("backfill", str(path), "--list", "--json")
    assert [b["backfill_id"] for b in json.loads(listed.stdout)] == [result["backfill_id"]]

    runs = json.loads(sluice_cli("runs", str(path), "--schedule", f"backfill:{result['backfill_id']}", "--json").stdout)
    assert sorted(r["logical_date"][:10] for r in runs) == [f"2026-01-0{i}" for i in range(1, 6)]
    assert {r["trigger"] for r in runs} == {"backfill"}
    assert json.loads(sluice_cli("runs", str(path), "--status", "failed", "--json").stdout) == []
    assert json.loads(sluice_cli("runs", str(path), "--until", "2000-01-01", "--json").stdout) == []

    dry = sluice_cli("prune", str(path), "--keep", "3650d", "--dry-run")
    assert dry.returncode == 0 and "would remove 0 row(s) of runs" in dry.stdout
    missing = sluice_cli("prune", str(path))
    assert missing.returncode == 2 and "no 'history:' section" in missing.stderr


def test_failed_dates_exit_1_and_name_the_dates(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "bf", PROJECT)
    result = sluice_cli("backfill", str(path), "--from", "2026-02-01", "--to", "2026-02-02", "--simulate", "--delay-scale", "0",
                    "--target", "clean_a", "--parallel", "2", "--fail", "2001")  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "failed: 2026-02-01T00:00:00+00:00, 2026-02-02T00:00:00+00:00" in result.stdout
    assert result.stdout.count(" failed    run ") == 2
    bad = sluice_cli("backfill", str(path), "--from", "2026-02-01", "--to", "2026-02-01", "--target", "nope")
    assert bad.returncode == 2 and "--target: target 'nope' is not an object id or name" in bad.stderr


def test_a_schedules_ticks_in_its_time_zone_are_the_dates(tmp_path: Path) -> None:
    schedules = "schedules:\n  twice: {cron: '0 2,14 * * *', timezone: Europe/Paris, targets: [raw_a], enabled: false}\n"
    path = write_yaml(tmp_path / "bf", PROJECT + schedules)
    args = ["backfill", str(path), "--from", "2026-01-01", "--to", "2026-01-01", "--schedule", "twice"]
    result = sluice_cli(*args, "--simulate", "--delay-scale", "0", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert [d["logical_date"] for d in answer["dates"]] == ["2026-01-01T02:00:00+01:00", "2026-01-01T14:00:00+01:00"]
    assert answer["spec"]["schedule"] == "twice" and answer["spec"]["targets"] == [1001]
    unknown = sluice_cli("backfill", str(path), "--from", "2026-01-01", "--to", "2026-01-01", "--schedule", "twicе")
    assert unknown.returncode == 2 and "--schedule twicе: no such schedule (schedules: twice)" in unknown.stderr


def test_sigterm_lets_the_running_date_finish_and_starts_no_more(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "bf", PROJECT)
    args = ["backfill", str(path), "--from", "2026-01-01", "--to", "2026-01-06", "--simulate"]
    with subprocess.Popen(
        [*SLUICE, *args, "--delay-scale", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.readline()  # the first date settled; the second is starting or about to
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
        stderr = proc.stderr.read()
    assert "stopping: no more dates start" in stderr and "continue with: sluice backfill" in stderr
    store = SqliteStateStore(tmp_path / "bf" / ".sluice" / "state.db")
    try:
        [record] = store.list_backfills("bf")
        statuses = [d.status for d in store.backfill_dates(record.backfill_id)]
        assert record.status == "running" and "running" not in statuses and "failed" not in statuses
        # the dates that started finished; the others wait, in date order
        assert statuses[0] == "succeeded" and statuses[-1] == "pending"
        assert statuses == sorted(statuses, key=lambda status: status != "succeeded")
    finally:
        store.close()
    listed = sluice_cli("backfill", str(path), "--list")  # no process runs it now
    assert f"{record.backfill_id}  stopped   2026-01-01..2026-01-06" in listed.stdout, listed.stdout
    resumed = sluice_cli("backfill", str(path), "--resume", record.backfill_id, "--json")  # --simulate: as started
    assert resumed.returncode == 0 and json.loads(resumed.stdout)["counts"] == {"succeeded": 6}
    assert "runs with the options it was started with: --simulate --delay-scale 0.5" in resumed.stderr


def test_a_resumed_backfill_runs_with_the_options_it_was_started_with(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "bf", PROJECT)
    args = ["--from", "2026-01-01", "--to", "2026-01-02", "--target", "clean_a"]
    first = sluice_cli("backfill", str(path), *args, "--simulate", "--delay-scale", "0", "--force", "--fail", "2001",
                       "--parallel", "2", "--json")  # fmt: skip
    assert first.returncode == 1, first.stderr
    backfill_id = json.loads(first.stdout)["backfill_id"]
    resumed = sluice_cli("backfill", str(path), "--resume", backfill_id)  # the printed hint: no flags
    assert resumed.returncode == 1, resumed.stderr
    assert "runs with the options it was started with: --force --simulate --delay-scale 0 --fail 2001" in resumed.stderr
    assert f"backfill {backfill_id}: 2 date(s) to run, 2 at once" in resumed.stderr
    again = sluice_cli("backfill", str(path), *args)  # the same command again resumes it the same way
    assert again.returncode == 1 and f"resuming backfill {backfill_id}" in again.stderr
    store = SqliteStateStore(tmp_path / "bf" / ".sluice" / "state.db")
    try:
        runs = store.find_runs("bf", limit=100)
        assert len(runs) == 6 and all(r.options["force"] and r.options["fail"] == [2001] for r in runs)
    finally:
        store.close()


def test_a_refused_parallel_backfill_records_nothing(tmp_path: Path) -> None:
    text = (
        "name: bf\nconnections:\n  dw: duckdb:///dw.duckdb\nobjects:\n"
        "  - {id: 1001, name: day, sql: \"SELECT DATE '{{ ds }}' AS day\", "
        "destination: {connection: dw, table: days, mode: replace}}\n"
    )
    path = write_yaml(tmp_path / "bf", text)
    refused = sluice_cli("backfill", str(path), "--from", "2026-01-01", "--to", "2026-01-03", "--parallel", "2")
    assert refused.returncode == 2
    assert "object 1001 (day) depends on the logical date and writes table 'days' with mode replace" in refused.stderr
    assert _runs_by_day(tmp_path / "bf") == {}
    listed = sluice_cli("backfill", str(path), "--list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stdout


def test_parallel_dates_run_an_object_that_does_not_depend_on_the_date_once(tmp_path: Path) -> None:
    """A new user's trial: with --parallel 3 every date of the first wave ran the date-free users object, and its
    append destination held its rows three times; now the first date runs it alone and the others find it fresh."""
    import duckdb

    text = (
        "name: bf\nconnections:\n  dw: duckdb:///dw.duckdb\nobjects:\n"
        "  - {id: 1001, name: users, source: {type: faker, schema: users, rows: 50, seed: 1}}\n"
        "  - {id: 2001, name: users_app, parents: [1001], sql: 'select user_id from users', "
        "destination: {connection: dw, table: users_app, mode: append}}\n"
        "  - {id: 2002, name: days, parents: [1001], sql: \"select count(*) as n, DATE '{{ ds }}' as day from users\", "
        "destination: {connection: dw, table: days, mode: append}}\n"
    )
    path = write_yaml(tmp_path / "bf", text)
    done = sluice_cli("backfill", str(path), "--from", "2026-01-01", "--to", "2026-01-04", "--parallel", "3")
    assert done.returncode == 0, done.stderr
    with duckdb.connect(str(tmp_path / "bf" / "dw.duckdb"), read_only=True) as db:
        assert db.execute("select count(*), count(distinct user_id) from users_app").fetchone() == (50, 50)
        assert db.execute("select count(*) from days").fetchone() == (4,)
    assert "objects 1001 (users), 2001 (users_app) do not depend on the date: the first date runs them alone" in done.stderr
    assert sorted(_runs_by_day(tmp_path / "bf")) == ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]


def test_a_date_whose_error_check_failed_does_not_become_the_plain_output(tmp_path: Path) -> None:
    """A new user's trial: day 3 failed its check, yet its rows became the plain ``cleaned/orders`` output that plain
    runs, models and other objects' checks read; the plain output now keeps the last date whose checks passed."""
    from sluice.lake.local import LocalLake
    from sluice.project.load import load_project

    folder = tmp_path / "bf"
    landing = folder / "landing"
    landing.mkdir(parents=True)
    for day, amount in (("2026-04-01", 3), ("2026-04-02", 4), ("2026-04-03", -5)):
        (landing / f"{day}.csv").write_text(f"id,amount\n{day[-1]},{amount}\n", encoding="utf-8")
    text = (
        "name: bf\nobjects:\n"
        "  - {id: 1001, name: orders_raw, source: {type: csv, path: 'landing/{{ ds }}.csv'}}\n"
        "  - {id: 2001, name: orders, parents: [1001], sql: 'select * from orders_raw', "
        "checks: [{expression: amount > 0}]}\n"
    )
    path = write_yaml(folder, text)
    done = sluice_cli("backfill", str(path), "--from", "2026-04-01", "--to", "2026-04-03")
    assert done.returncode == 1, done.stderr  # day 3 failed its check
    project = load_project(path)
    lake = LocalLake(project.resolve_lake_path())
    plain = lake.read(lake.current_location("cleaned", "orders") or "").read_all().to_pylist()
    assert plain == [{"id": 2, "amount": 4}]  # day 2's, the last date that passed


DAILY = """
name: daily
objects:
  - {id: 1001, name: day_file, source: {type: csv, path: "data/{{ ds }}.csv"}}
  - id: 2001
    name: day_rows
    parents: [1001]
    sql: "SELECT id, '{{ ds }}' AS ds, '{{ data_interval_start }}' AS interval_start,
          '{{ data_interval_end }}' AS interval_end FROM day_file"
schedules:
  nightly: {cron: "30 0 * * *", timezone: Europe/Paris, targets: [day_rows], enabled: false}
"""


def _day_rows(root: Path) -> list[tuple[object, ...]]:
    import duckdb

    outputs = sorted((root / ".sluice" / "lake" / "cleaned").glob("day_rows.ld-*.parquet"))  # one output per date
    return [row for path in outputs for row in duckdb.sql(f"SELECT * FROM '{path}'").fetchall()]


def _daily(root: Path) -> Path:
    path = write_yaml(root, DAILY)
    (root / "data").mkdir()
    for i, day in enumerate(("2026-03-28", "2026-03-29", "2026-03-30")):
        (root / "data" / f"{day}.csv").write_text(f"id\n{i}\n", encoding="utf-8")
    return path


def test_a_backfill_renders_ds_in_its_time_zone_and_a_schedules_data_interval(tmp_path: Path) -> None:
    """Days at midnight in Paris are the Paris days (not the UTC evening before); a schedule's ticks each cover the
    time since the previous tick (23 hours over the spring change), as the scheduler's runs do."""
    path = _daily(tmp_path / "days")
    days = sluice_cli("backfill", str(path), "--from", "2026-03-28", "--to", "2026-03-30", "--timezone", "Europe/Paris", "--json")
    assert days.returncode == 0, days.stdout + days.stderr
    assert [(r[0], r[1]) for r in _day_rows(tmp_path / "days")] == [(0, "2026-03-28"), (1, "2026-03-29"), (2, "2026-03-30")]
    assert all(r[2] == r[3] for r in _day_rows(tmp_path / "days"))  # a day's run has an empty interval

    path = _daily(tmp_path / "ticks")
    ticks = sluice_cli("backfill", str(path), "--from", "2026-03-29", "--to", "2026-03-30", "--schedule", "nightly", "--json")
    assert ticks.returncode == 0, ticks.stdout + ticks.stderr
    assert _day_rows(tmp_path / "ticks") == [  # 00:30 Paris is 23:30 / 22:30 UTC the evening before
        (1, "2026-03-29", "2026-03-28 00:30:00+01:00", "2026-03-29 00:30:00+01:00"),
        (2, "2026-03-30", "2026-03-29 00:30:00+01:00", "2026-03-30 00:30:00+02:00"),
    ]


def test_the_list_says_when_there_are_no_backfills_and_contradicting_options_are_refused(tmp_path: Path) -> None:
    schedules = "schedules:\n  twice: {cron: '0 2,14 * * *', timezone: Europe/Paris, targets: [raw_a], enabled: false}\n"
    path = write_yaml(tmp_path / "bf", PROJECT + schedules)
    listed = sluice_cli("backfill", str(path), "--list")
    assert listed.returncode == 0 and listed.stdout == "no backfills\n", listed.stdout + listed.stderr
    resumed = sluice_cli("backfill", str(path), "--resume", "b1", "--from", "2026-01-01", "--to", "2026-01-02")
    assert resumed.returncode == 2
    assert resumed.stderr == (
        "error: --resume b1 runs that backfill's own dates not yet succeeded; drop --from --to (or start a new backfill "
        "with --from and --to, without --resume)\n"
    )
    args = ["backfill", str(path), "--from", "2026-01-01", "--to", "2026-01-01", "--schedule", "twice"]
    zoned = sluice_cli(*args, "--timezone", "UTC")
    assert zoned.returncode == 2
    assert zoned.stderr == (
        "error: --timezone UTC: schedule 'twice' runs in its own time zone, Europe/Paris; drop --timezone (or give "
        "Europe/Paris)\n"
    )
    assert sluice_cli("backfill", str(path), "--list").stdout == "no backfills\n"  # nothing recorded
    same = sluice_cli(*args, "--timezone", "Europe/Paris", "--simulate", "--delay-scale", "0", "--json")
    assert same.returncode == 0, same.stderr


def _being_run_elsewhere(path: Path, start: str, end: str) -> str:
    """A backfill of ``start``..``end`` recorded in the project's state store and held by a live process of
    another host (its lease renewed for the next ten minutes); its id."""
    import time
    from datetime import date

    from sluice.scheduling.backfill_lease import lease_key
    from sluice.scheduling.backfills import Backfills, BackfillSpec, logical_dates

    store = SqliteStateStore(path.parent / ".sluice" / "state.db")
    try:
        spec = BackfillSpec(date.fromisoformat(start), date.fromisoformat(end))
        backfill_id = Backfills(store, "bf").create(spec, logical_dates(spec.start, spec.end)).backfill_id
        assert store.acquire_lease(lease_key("bf", backfill_id), "elsewhere:4242:x", time.time(), 600)
        return backfill_id
    finally:
        store.close()


def test_a_backfill_sharing_a_date_with_one_being_run_is_refused_before_anything_is_recorded(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "bf", PROJECT)
    (tmp_path / "bf" / ".sluice").mkdir()
    running = _being_run_elsewhere(path, "2026-01-01", "2026-01-06")
    args = ["backfill", str(path), "--from", "2026-01-06", "--to", "2026-01-08", "--simulate", "--delay-scale", "0"]
    refused = sluice_cli(*args)
    assert refused.returncode == 2, refused.stderr
    assert f"this backfill shares 1 logical date(s) (from 2026-01-06T00:00:00+00:00) with backfill {running}" in refused.stderr
    assert "date(s) to run" not in refused.stderr
    listed = sluice_cli("backfill", str(path), "--list", "--json")
    assert [b["backfill_id"] for b in json.loads(listed.stdout)] == [running]  # nothing recorded for the refused one
    assert _runs_by_day(tmp_path / "bf") == {}


def test_a_backfill_that_lost_its_lease_exits_3_saying_so(tmp_path: Path, monkeypatch: object) -> None:
    import pytest
    from click.testing import CliRunner

    from sluice.cli.backfill import LEASE_LOST, backfill
    from sluice.scheduling.backfills import Backfills
    from sluice.state.base import BackfillRecord

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    path = write_yaml(tmp_path / "bf", PROJECT)

    def lose(self: Backfills, backfill_id: str, *args: object, **kwargs: object) -> BackfillRecord:
        self._lose()  # the lease renewal found another holder
        return self.state.get_backfill(backfill_id)

    monkeypatch.setattr(Backfills, "run", lose)
    monkeypatch.setattr("sluice.cli.backfill._stop_on_interrupt", lambda *args: None)
    result = CliRunner().invoke(backfill, [str(path), "--from", "2026-01-01", "--to", "2026-01-02", "--simulate"])
    assert result.exit_code == LEASE_LOST == 3
    assert "another process took over its lease while this one ran it, so no more dates started here" in result.output
    assert "stopped; continue with" not in result.output


GATE_ONCE = (  # the object waits in the killed process; it marks each start and each end
    "import time\nfrom pathlib import Path\n"
    "def run(users):\n"
    "    here = Path(__file__).parent\n"
    "    with (here / 'calls').open('a') as f:\n"
    "        f.write('s')\n"
    "    deadline = time.monotonic() + 60\n"
    "    while not (here / 'go').exists() and time.monotonic() < deadline:\n"
    "        time.sleep(0.05)\n"
    "    with (here / 'calls').open('a') as f:\n"
    "        f.write('d')\n"
    "    return users\n"
)


def test_a_killed_backfills_object_is_finished_once_by_another_processs_workers_and_not_run_again(tmp_path: Path) -> None:
    """``kill -9`` of a backfill while one of its objects runs: its run stays ``running``, so the stage workers of
    another process on the same bus and state store (``sluice serve``'s) take the object over once its lease
    expires and finish it, once; resuming the backfill continues the run without running that object again."""
    from helpers import wait_for
    from sluice.project.load import load_project
    from sluice.runtime.run import open_backends, start_workers, stop_workers

    folder = tmp_path / "bf"
    text = (
        "name: bf\nlease_s: 1\nobjects:\n  - {id: 1001, name: users, source: {type: faker, schema: users, rows: 5, seed: 1}}\n"
        '  - {id: 2001, name: gated, parents: [1001], python: "gate:run"}\n'
        "  - {id: 3001, name: after, parents: [2001], sql: select * from gated}\n"
    )
    path = write_yaml(folder, text)
    (folder / "gate.py").write_text(GATE_ONCE)
    args = ["backfill", str(path), "--from", "2026-01-01", "--to", "2026-01-01"]
    with subprocess.Popen([*SLUICE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        wait_for(lambda: (folder / "calls").exists(), 60, "the backfill's object to start")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert _runs_by_day(folder) == {"2026-01-01": ["running"]}
    (folder / "go").touch()

    project = load_project(path)
    with open_backends(project) as backends:  # another process's workers (sluice serve's), same bus and state store
        workers = start_workers(project, backends)
        try:
            wait_for(lambda: (folder / "calls").read_text() == "ssd", 60, "another worker to finish the object")
        finally:
            stop_workers(*workers)

    again = sluice_cli(*args, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["counts"] == {"succeeded": 1}
    assert _runs_by_day(folder) == {"2026-01-01": ["succeeded"]}  # the killed run continued, no second run
    assert (folder / "calls").read_text() == "ssd"  # finished once, not run again by the resumed backfill
