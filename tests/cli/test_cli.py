"""The sluice command as a user runs it: exit codes, messages without tracebacks, JSON outputs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import load, loaded_count, seed_project, summary_json, wait_for, write_yaml

SLUICE = [sys.executable, "-m", "sluice"]
FIELD = Path(__file__).resolve().parents[2] / "examples" / "seed-002-field" / "Objets.json"


def sluice(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SLUICE, *args], capture_output=True, text=True, timeout=timeout, check=False)


EXAMPLES = sorted(path.parent for path in (FIELD.parents[1]).glob("*/*") if path.name in ("sluice.yaml", "Objets.json"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_every_example_is_valid_without_its_servers(example: Path) -> None:
    """The file alone: ``sluice validate`` reaches no database unless asked with ``--live``."""
    result = sluice("validate", str(example))
    assert result.returncode == 0, result.stderr
    assert "no problems found" in result.stdout


def test_validate_ok(tmp_path: Path) -> None:
    result = sluice("validate", str(seed_project(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "20 objects" in result.stdout


def test_validate_notes_a_rest_secret_whose_environment_variable_is_not_set(tmp_path: Path) -> None:
    (tmp_path / "sluice.yaml").write_text(
        "objects:\n  - id: 1001\n    name: things\n    source: {type: rest, base_url: 'http://127.0.0.1:1', path: /x,\n"
        "             auth: {type: bearer, token_env: SLUICE_TEST_UNSET_TOKEN}}\n",
        encoding="utf-8",
    )
    result = sluice("validate", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (
        "note: object 1001 (things): auth bearer reads its secret from the environment variable SLUICE_TEST_UNSET_TOKEN, "
        "which is not set here; set it before the run"
    ) in result.stdout


def test_validate_error_is_one_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "Objets.json"
    path.write_text('[{"IdObjet": 2001, "IdObjet_Parent": 1999}]')
    result = sluice("validate", str(path))
    assert result.returncode == 2
    assert "unknown parent 1999" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_reports_unknown_sql_tables_and_missing_files_that_run_would_meet(tmp_path: Path) -> None:
    path = tmp_path / "sluice.yaml"
    path.write_text(
        "objects:\n"
        "  - {id: 1001, name: users, source: {type: csv, path: data/users.csv}}\n"
        "  - {id: 2001, name: clean, parents: [1001], sql: select * from user}\n",
        encoding="utf-8",
    )
    result = sluice("validate", str(path))
    assert result.returncode == 2
    assert f"{path}:2: object 1001 (users): csv source path 'data/users.csv' does not exist" in result.stderr
    assert (
        f"{path}:3: object 2001 (clean): the SQL reads 'user', which is not one of its parents. Did you mean 'users'?"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_malformed_json_reports_line(tmp_path: Path) -> None:
    path = tmp_path / "Objets.json"
    path.write_text('[\n{"IdObjet": 1001,,}\n]')
    result = sluice("validate", str(path))
    assert result.returncode == 2
    assert f"{path}:2: malformed JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_refuses_invalid_project_and_runs_nothing(tmp_path: Path) -> None:
    path = tmp_path / "Objets.json"
    path.write_text('[{"IdObjet": 1001, "IdObjet_Parent": 2001}, {"IdObjet": 2001, "IdObjet_Parent": 1001}]')
    result = sluice("run", str(path), "--json")
    assert result.returncode == 2
    assert "dependency cycle" in result.stderr
    assert not (tmp_path / ".sluice").exists()


def test_unknown_target_and_fail_ids(tmp_path: Path) -> None:
    path = seed_project(tmp_path)
    result = sluice("plan", str(path), "--target", "4242")
    assert result.returncode == 2 and "unknown target" in result.stderr
    result = sluice("run", str(path), "--fail", "4242")
    assert result.returncode == 2 and "--fail" in result.stderr


def test_plan_json(tmp_path: Path) -> None:
    result = sluice("plan", str(seed_project(tmp_path)), "--json", "--target", "3002")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert [o["id"] for o in plan["objects"]] == [1003, 1004, 2004, 3002]
    assert {o["action"] for o in plan["objects"]} == {"run"}


STREAMING_PROJECT = """\
name: streams
connections:
  events: kafka://127.0.0.1:1
objects:
  - id: 1001
    name: events
    source: {type: kafka, connection: events, topic: events}
    streaming: {trigger: 1s}
  - id: 2001
    name: totals
    parents: [1001]
    sql: SELECT count(*) AS n FROM events
"""


def test_plan_shows_a_streaming_object_that_has_committed_nothing_yet_and_exits_0(tmp_path: Path) -> None:
    """``sluice plan`` shows the plan (it exited 2 with the error of ``sluice run``); ``sluice run`` still refuses it."""
    import pyarrow as pa

    from sluice.lake.registry import open_lake

    path = write_yaml(tmp_path / "p", STREAMING_PROJECT)
    result = sluice("plan", str(path))
    assert result.returncode == 0, result.stderr
    assert "stream first (nothing committed yet)" in result.stdout
    assert "1 to run, 0 fresh, 1 to stream first\n" in result.stdout
    assert (
        "streaming object 1001 (events) has committed no micro-batch yet: 'sluice stream' runs it, not 'sluice run', "
        f"which refuses this plan until it has; start it with: sluice stream {path} --object 1001\n"
    ) in result.stdout
    assert result.stderr == ""
    plan = json.loads(sluice("plan", str(path), "--json").stdout)
    assert [(o["id"], o["action"]) for o in plan["objects"]] == [(1001, "stream"), (2001, "run")]
    assert (plan["to_run"], plan["fresh"], plan["to_stream"]) == (1, 0, 1)
    refused = sluice("run", str(path))
    assert refused.returncode == 2
    assert refused.stderr == (
        "error: streaming object 1001 (events) has committed no micro-batch yet, and the run reads it; "
        f"start it first with: sluice stream {path} --object 1001\n"
    )
    open_lake(load(path)).append("raw", "events", pa.table({"id": [1, 2]}).to_reader(), commit={"batch": 1})
    result = sluice("plan", str(path))
    assert result.returncode == 0, result.stderr
    assert "fresh (streamed)" in result.stdout and "1 to run, 1 fresh\n" in result.stdout
    assert "committed no micro-batch" not in result.stdout
    plan = json.loads(sluice("plan", str(path), "--json").stdout)
    assert [(o["id"], o["action"]) for o in plan["objects"]] == [(1001, "fresh"), (2001, "run")]
    assert (plan["to_run"], plan["fresh"], plan["to_stream"]) == (1, 1, 0)


def test_run_json_exit_codes_and_events(tmp_path: Path) -> None:
    path = seed_project(tmp_path)
    failed = sluice("run", str(path), "--json", "--simulate", "--delay-scale", "0", "--fail", "2005")
    assert failed.returncode == 1, failed.stderr
    summary = summary_json(failed.stdout)
    assert summary["status"] == "failed"
    assert summary["objects"]["2005"]["status"] == "failed"
    assert summary["objects"]["2005"]["attempts"] == 3
    assert summary["objects"]["3006"]["status"] == "skipped"
    events = sluice("events", str(path), "--run", summary["run_id"], "--json")
    assert events.returncode == 0, events.stderr
    records = [json.loads(line) for line in events.stdout.splitlines()]
    assert records[0]["type"] == "RunStarted" and records[-1]["type"] == "RunFinished"
    for record in records:
        assert {"type", "run_id", "ts", "position", "v"} <= set(record)
    positions = [r["position"] for r in records]
    assert positions == sorted(positions)
    assert all("object_id" in r and "attempt" in r for r in records if r["type"].startswith("Object"))
    ok = sluice("run", str(path), "--json")
    assert ok.returncode == 0, ok.stderr


def test_run_progress_output_without_json(tmp_path: Path) -> None:
    result = sluice("run", str(seed_project(tmp_path)), "--simulate", "--delay-scale", "0")
    assert result.returncode == 0, result.stderr
    assert "ingest" in result.stdout and "application" in result.stdout
    assert "succeeded" in result.stdout


def test_json_logs_carry_run_and_object_ids(tmp_path: Path) -> None:
    result = sluice("run", str(seed_project(tmp_path)), "--json", "--fail", "2005", "--log-format", "json")
    assert result.returncode == 1
    logs = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    failures = [entry for entry in logs if entry.get("object_id") == 2005]
    assert failures, result.stderr
    assert all({"timestamp", "level", "logger", "message", "run_id"} <= set(entry) for entry in failures)


def test_events_schema() -> None:
    result = sluice("events", "--schema", ".")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert {"RunStarted", "ObjectReady", "ObjectLoaded", "ObjectFailed", "ObjectSkipped", "RunFinished"} <= set(schema["$defs"])


def test_interrupt_cancels_the_run_cleanly(tmp_path: Path) -> None:
    import signal

    path = seed_project(tmp_path)
    process = subprocess.Popen(
        [*SLUICE, "run", str(path), "--json", "--simulate", "--delay-scale", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: loaded_count(path.parent / ".sluice" / "state.db") > 0, 60, "the run to be under way")
    process.send_signal(signal.SIGINT)  # the run is under way and needs seconds more
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    summary = summary_json(out)
    assert summary["status"] == "cancelled"
    reasons = {o["reason"] for o in summary["objects"].values() if o["status"] == "skipped"}
    assert reasons == {"run cancelled"}
    assert "cancelling the run" in err


def test_run_with_a_run_id_but_without_resume_is_refused_in_one_line(tmp_path: Path) -> None:
    path = seed_project(tmp_path)
    result = sluice("run", str(path), "--run", "20261202-001500-3fa2c1d0", "--simulate", "--delay-scale", "0")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"error: --run 20261202-001500-3fa2c1d0 names a run to continue: add --resume (sluice run {path} --resume --run "
        "20261202-001500-3fa2c1d0), or drop --run to start a new run"
    ]
    assert json.loads(sluice("runs", str(path), "--json").stdout) == [], "no run started"


@pytest.mark.parametrize("as_json", [False, True], ids=["progress", "json"])
def test_a_run_whose_output_reader_went_away_finishes_and_is_recorded(tmp_path: Path, as_json: bool) -> None:
    path = seed_project(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)  # `sluice run PATH | head -3` once head has its lines: every write meets a broken pipe
    try:
        run = [*SLUICE, "run", str(path), "--simulate", "--delay-scale", "0", *(["--json"] if as_json else [])]
        result = subprocess.run(run, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    finally:
        os.close(write_end)
    assert result.returncode == 0 and "Traceback" not in result.stderr and "Broken pipe" not in result.stderr, result.stderr
    [run_record] = json.loads(sluice("runs", str(path), "--json").stdout)
    assert run_record["status"] == "succeeded"


def test_runs_says_when_a_running_run_started_by_hand_has_lost_its_coordinator(tmp_path: Path) -> None:
    from sluice.runtime.run import open_backends
    from sluice.runtime.run_lease import run_lease, run_lease_key
    from sluice.state.base import RunRecord

    path = seed_project(tmp_path)
    project = load(path)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    with open_backends(project) as backends:
        state = backends.state
        for run_id, trigger in (("killed", "manual"), ("driven", "manual"), ("scheduled", "schedule")):
            state.create_run(RunRecord(run_id, project.name, "running", 1.0, options={"trigger": trigger}), [])
        killed_holder = f"{socket.gethostname()}:{gone.stdout.strip()}:x"  # kill -9: its process is gone
        assert state.acquire_lease(run_lease_key(project.name, "killed"), killed_holder, time.time(), 30)
        live = run_lease(state, project.name, "driven")
        live.hold()  # its coordinator lives (this process)
        try:
            listed = json.loads(sluice("runs", str(path), "--status", "running", "--json").stdout)
            lines = sluice("runs", str(path)).stdout.splitlines()
        finally:
            live.release()
    assert {r["run_id"]: (r["status"], r["coordinator_gone"]) for r in listed} == {
        "killed": ("running", True),
        "driven": ("running", False),
        "scheduled": ("running", False),  # a scheduled run holds no run lease: the scheduler resumes it
    }
    shown = {line.split()[0]: line.split("  ")[1].strip() for line in lines}
    assert shown == {"killed": "running (coordinator gone)", "driven": "running", "scheduled": "running"}


def field_project(tmp_path: Path) -> Path:
    """A copy of examples/seed-002-field (strings as parents, names repeated per stage, Zone, EtatObjet)."""
    target = tmp_path / "field"
    target.mkdir()
    shutil.copy(FIELD, target / "Objets.json")
    return target


def test_field_objets_json_validates_plans_and_runs(tmp_path: Path) -> None:
    path = field_project(tmp_path)
    result = sluice("validate", str(path))
    assert result.returncode == 0, result.stderr
    assert "21 objects" in result.stdout and "2 left out" in result.stdout
    result = sluice("plan", str(path))
    assert result.returncode == 0, result.stderr
    assert "1007 LegacyLoyalty (ingest): EtatObjet is 'Inactif', not active" in result.stdout
    assert "2009 LoyaltyPoints (standardize): parent 1007 (LegacyLoyalty) is left out" in result.stdout
    plan = json.loads(sluice("plan", str(path), "--json").stdout)
    assert {o["id"] for o in plan["left_out"]} == {1007, 2009}
    assert not {1007, 2009} & {o["id"] for o in plan["objects"]}
    result = sluice("plan", str(path), "--target", "2009")
    assert result.returncode == 2 and "target object 2009 (LoyaltyPoints) is left out of every plan" in result.stderr
    result = sluice("run", str(path), "--json", "--simulate", "--delay-scale", "0")
    assert result.returncode == 0, result.stderr
    summary = summary_json(result.stdout)
    assert summary["status"] == "succeeded"
    assert {s["status"] for s in summary["objects"].values()} == {"loaded"}
    assert len(summary["objects"]) == 21 and "1007" not in summary["objects"]


def test_demo_refuses_a_folder_holding_another_project_and_a_file(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "sluice.yaml").write_text("objects: []\n")
    result = sluice("demo", str(tmp_path / "mine"), "--no-run")
    assert result.returncode == 2 and "already holds a project the demo did not build" in result.stderr
    assert (tmp_path / "mine" / "sluice.yaml").read_text() == "objects: []\n"
    result = sluice("demo", str(tmp_path / "mine" / "sluice.yaml"), "--no-run")
    assert result.returncode == 2 and "is a file" in result.stderr and "Traceback" not in result.stderr


def test_user_mistakes_on_the_command_line_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "sluice.yaml").write_bytes(b"name: caf\xe9\nobjects: [{id: 1001}]\n")
    result = sluice("validate", str(tmp_path))
    assert result.returncode == 2 and result.stderr.strip().endswith(
        "byte 0xe9 is not UTF-8 text; save the file as UTF-8 (it looks like Latin-1 or Windows-1252)"
    )
    (tmp_path / "sluice.yaml").write_text("objects: [{id: 1001}]\n")
    for args, message in [
        (("schema", "--output", str(tmp_path / "missing" / "x.json")), "cannot write"),
        (("run", str(tmp_path), "--metrics-port", "99999"), "99999 is not in the range"),
        (("worker", str(tmp_path), "--stage", "ingest", "--concurrency", "0"), "0 is not in the range"),
    ]:
        result = sluice(*args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
