"""The end-of-run lines of ``sluice sync run`` and ``sluice sync resync``'s checks (:mod:`sluice.cli.sync`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sluice.cdc.state import resync_dir, resync_name, resync_requests
from sluice.cdc.status import SyncStatus, TableStatus, write_status
from sluice.cli.main import cli
from sluice.cli.sync import child_failed, final_report
from sluice.errors import ConfigError


def table(name: str, **kw: object) -> TableStatus:
    return TableStatus(source_table=name, target_table=name, direction="a -> b", **kw)  # type: ignore[arg-type]


def test_summary_counts_dead_letters_and_conflicts_when_there_are_some() -> None:
    status = SyncStatus(
        name="s1",
        source="a",
        target="b",
        direction="one-way",
        tables=[table("app.t", applied={"insert": 7}, dead_letters=5, conflicts=2), table("app.u", dead_letters=1)],
    )
    problems, summary = final_report(status, "sluice_cdc")
    assert problems == []
    assert summary == (
        "sync s1 stopped: 7 row changes applied, 0 table(s) in error, 2 conflict(s) "
        "(see sluice_cdc.conflicts), 6 dead letter(s) (see sluice_cdc.dead_letters)"
    )


def test_summary_without_dead_letters_stays_short_and_errors_name_the_command() -> None:
    status = SyncStatus(
        name="s1", source="a", target="b", direction="one-way", tables=[table("app.t", state="error", error="boom")]
    )
    problems, summary = final_report(status)
    assert summary == "sync s1 stopped: 0 row changes applied, 1 table(s) in error"
    assert problems == ["table app.t stopped: boom (fix it, then 'sluice sync resync PATH app.t')"]


def test_an_error_that_names_the_resync_is_not_told_twice_and_commands_name_the_project() -> None:
    from sluice.cdc.status import with_path

    error = "table public.t: cannot change column id in place; run `sluice sync resync PATH app.t` (PATH: the project) to copy"
    status = SyncStatus(
        name="s1", source="a", target="b", direction="one-way", tables=[table("app.t", state="error", error=error)]
    )
    problems, _ = final_report(status, path="/srv/my project")
    assert problems == [
        "table app.t stopped: table public.t: cannot change column id in place; run "
        "`sluice sync resync '/srv/my project' app.t` to copy"
    ]
    status.tables[0].error = "boom"
    assert final_report(status, path=".")[0] == ["table app.t stopped: boom (fix it, then 'sluice sync resync . app.t')"]
    lost = "cannot resume: purged. Run 'sluice sync PATH --name s1 --resnapshot' to copy the tables again"
    assert (
        with_path(lost, "proj") == "cannot resume: purged. Run 'sluice sync proj --name s1 --resnapshot' to copy the tables again"
    )


def test_a_capture_process_summary_counts_what_it_captured() -> None:
    status = SyncStatus(
        name="s1",
        source="a",
        target="b",
        direction="one-way",
        tables=[table("app.t", captured={"r": 5000, "c": 7}), table("app.u", captured={"u": 3})],
    )
    _, summary = final_report(status, captured_only=True)
    assert summary == "capture of sync s1 stopped: 5,010 row changes captured, 0 table(s) in error"


def test_summary_counts_invalid_dates_written_as_null_when_there_are_some() -> None:
    tables = [table("app.t", captured={"r": 5}, invalid_dates=3), table("app.u", invalid_dates=1)]
    _, summary = final_report(
        SyncStatus(name="s1", source="a", target="b", direction="one-way", tables=tables), captured_only=True
    )
    assert summary == "capture of sync s1 stopped: 5 row changes captured, 0 table(s) in error, 4 invalid date(s) written as NULL"
    _, summary = final_report(SyncStatus(name="s1", source="a", target="b", direction="one-way", tables=tables[1:]))
    assert summary == "sync s1 stopped: 0 row changes applied, 0 table(s) in error, 1 invalid date(s) written as NULL"


def test_capture_failure_line_starts_on_its_own_line() -> None:
    assert child_failed(2).startswith("\nerror: the capture process exited with status 2")


def test_resync_refuses_a_name_the_sync_does_not_have_and_completes_a_short_one(tmp_path: Path) -> None:
    """Names are checked against the sync's tables in its status file (they used to be accepted and left
    waiting forever)."""
    (tmp_path / "sluice.yaml").write_text(
        "connections:\n  my: mysql://u:p@127.0.0.1:1/shop\n  pg: postgresql://u@127.0.0.1:1/wh\n"
        "syncs:\n  - {name: s1, source: my, target: pg, tables: [customers, orders]}\n"
    )
    work = tmp_path / ".sluice"
    runner = CliRunner()
    # Never ran: no status file, nothing to check against (the capture drops a request it cannot match).
    assert runner.invoke(cli, ["sync", "resync", str(tmp_path), "shop.whatever"]).exit_code == 0
    assert resync_requests(work, "s1") == ["shop.whatever"]
    (resync_dir(work, "s1") / "shop.whatever").unlink()
    tables = [table(f"tester_shop.{name}") for name in ("customers", "orders")]
    write_status(work, SyncStatus(name="s1", source="my", target="pg", direction="one-way", tables=tables))
    refused = runner.invoke(cli, ["sync", "resync", str(tmp_path), "tester_shop.custmers"])
    assert refused.exit_code != 0
    assert "sync 's1' has no table 'tester_shop.custmers'" in refused.output
    assert "Did you mean 'tester_shop.customers'?" in refused.output
    assert runner.invoke(cli, ["sync", "resync", str(tmp_path), "nosuch"]).exit_code != 0
    short = runner.invoke(cli, ["sync", "resync", str(tmp_path), "custmers"])  # a short name is compared with short ones
    assert short.exit_code != 0 and "Did you mean 'customers'?" in short.output, short.output
    assert resync_requests(work, "s1") == []
    done = runner.invoke(cli, ["sync", "resync", str(tmp_path), "customers"])
    assert done.exit_code == 0, done.output
    assert "resync of tester_shop.customers requested" in done.output
    assert resync_requests(work, "s1") == ["tester_shop.customers"]


def test_resync_name_with_two_tables_of_that_short_name_asks_for_the_full_one() -> None:
    with pytest.raises(ConfigError, match="several tables named 'items'"):
        resync_name("items", ["db.items", "public.items"], "s1")
    assert resync_name("db.items", ["db.items", "public.items"], "s1") == "db.items"
    # both ways: the declared source's table, not its target (the other direction's source)
    assert resync_name("items", ["db.items"], "s1", ["public.items"]) == "db.items"


def test_status_of_a_killed_process_says_not_running(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "sluice.yaml").write_text(
        "connections:\n  my: mysql://u:p@127.0.0.1:1/shop\n  pg: postgresql://u@127.0.0.1:1/wh\n"
        "syncs:\n  - {name: s1, source: my, target: pg, tables: [customers]}\n"
    )
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    pid = int(done.stdout)  # exited: like a process killed with -9, its file still says streaming
    status = SyncStatus(name="s1", source="my", target="pg", direction="one-way", state="streaming", pid=pid)
    status.roles = ["capture:my", "apply:pg"]
    write_status(tmp_path / ".sluice", status)
    shown = CliRunner().invoke(cli, ["sync", "status", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert f"sync s1: not running (pid {pid} gone; one-way, updated" in shown.output


def test_status_writes_the_resync_advice_of_a_stopped_table_for_the_project_named(tmp_path: Path) -> None:
    (tmp_path / "sluice.yaml").write_text(
        "connections:\n  my: mysql://u:p@127.0.0.1:1/shop\n  pg: postgresql://u@127.0.0.1:1/wh\n"
        "syncs:\n  - {name: s1, source: my, target: pg, tables: [customers]}\n"
    )
    error = (
        "table public.customers: cannot change column id in place; "
        "run `sluice sync resync PATH shop.customers` (PATH: the project) to copy"
    )
    table = TableStatus("shop.customers", "public.customers", "my -> pg", state="error", error=error)
    write_status(tmp_path / ".sluice", SyncStatus(name="s1", source="my", target="pg", direction="one-way", tables=[table]))
    shown = CliRunner().invoke(cli, ["sync", "status", str(tmp_path)], terminal_width=400)
    assert shown.exit_code == 0, shown.output
    assert f"sluice sync resync {tmp_path} shop.customers" in " ".join(shown.output.split()), shown.output
    assert "PATH" not in shown.output


def test_resync_both_ways_refuses_the_target_sides_copy_of_a_table(tmp_path: Path) -> None:
    """A resync copies the declared source over the target: naming the target side's table (which the other
    direction captures) would have copied the target over the source and deleted rows only the source had."""
    (tmp_path / "sluice.yaml").write_text(
        "connections:\n  my: mysql://u:p@127.0.0.1:1/shop\n  pg: postgresql://u@127.0.0.1:1/wh\n"
        "syncs:\n  - {name: s1, source: my, target: pg, tables: [items], direction: both}\n"
    )
    work = tmp_path / ".sluice"
    tables = [
        TableStatus(source_table="shop.items", target_table="public.items", direction="my -> pg"),
        TableStatus(source_table="public.items", target_table="shop.items", direction="pg -> my"),
    ]
    write_status(work, SyncStatus(name="s1", source="my", target="pg", direction="both", tables=tables))
    runner = CliRunner()
    refused = runner.invoke(cli, ["sync", "resync", str(tmp_path), "public.items"])
    assert refused.exit_code == 2
    assert "public.items is the target side's copy of a table of sync 's1'" in refused.output
    assert "name the source table (shop.items)" in refused.output
    assert resync_requests(work, "s1") == []
    done = runner.invoke(cli, ["sync", "resync", str(tmp_path), "items"])
    assert done.exit_code == 0 and resync_requests(work, "s1") == ["shop.items"]


def test_status_without_name_shows_every_sync_of_the_file(tmp_path: Path) -> None:
    """Two syncs in one file: ``status`` shows both (it asked for --name and exited 2), ``--json`` gives an array,
    a sync that has not run yet is a note; ``--name`` still picks one (a trial's finding)."""
    (tmp_path / "sluice.yaml").write_text(
        "connections:\n  my: mysql://u:p@127.0.0.1:1/shop\n  pg: postgresql://u@127.0.0.1:1/wh\n"
        "syncs:\n  - {name: s1, source: my, target: pg, tables: [customers]}\n"
        "  - {name: s2, source: my, target: pg, tables: [orders], target_namespace: other}\n"
        "  - {name: s3, source: my, target: pg, tables: [items], target_namespace: third}\n"
    )
    work = tmp_path / ".sluice"
    for name, source_table in (("s1", "shop.customers"), ("s2", "shop.orders")):
        write_status(work, SyncStatus(name=name, source="my", target="pg", direction="one-way", tables=[table(source_table)]))
    runner = CliRunner()
    shown = runner.invoke(cli, ["sync", "status", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert "sync s1: " in shown.stdout and "sync s2: " in shown.stdout
    assert "shop.customers" in shown.stdout and "shop.orders" in shown.stdout
    assert "note: sync s3 has not run yet" in shown.stderr
    as_json = runner.invoke(cli, ["sync", "status", str(tmp_path), "--json"])
    assert [s["name"] for s in json.loads(as_json.stdout)] == ["s1", "s2"]
    one = runner.invoke(cli, ["sync", "status", str(tmp_path), "--name", "s2", "--json"])
    assert json.loads(one.stdout)["name"] == "s2"
    never = runner.invoke(cli, ["sync", "status", str(tmp_path), "--name", "s3"])
    assert never.exit_code == 2 and "error: sync s3 has not run yet" in never.stderr


def test_the_start_line_says_where_the_tables_go(tmp_path: Path) -> None:
    """The target's schema or database, given or the URL's default (a trial missed that tables landed in public)."""
    from sluice.cli.sync import _route
    from sluice.project.load import load_project

    (tmp_path / "sluice.yaml").write_text(
        "connections:\n  my: mysql://u:p@127.0.0.1:1/shop\n  pg: postgresql://u@127.0.0.1:1/wh\n"
        "syncs:\n  - {name: s1, source: my, target: pg, tables: [customers]}\n"
        "  - {name: s2, source: pg, target: my, tables: [customers], direction: both}\n"
        "  - {name: s3, source: my, target: pg, tables: [customers], target_namespace: staging}\n"
    )
    routes = [_route(spec) for spec in load_project(tmp_path).syncs]
    assert routes == ["my -> pg, into schema public", "pg <-> my, into database shop", "my -> pg, into schema staging"]
