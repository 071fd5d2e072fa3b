"""Run progress: live bars on a terminal, plain whole lines anywhere else; errors never cut."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from helpers import seed_project
from sluice import events as ev
from sluice.cli.progress import RunProgress, make_console, summary_table
from sluice.project.load import load_project
from sluice.runtime.summary import RunSummary
from sluice.state.base import ObjectState

LONG_ERROR = "SQL failed: Catalog Error: Table with name clients_standardized does not exist! " + "detail " * 40


def plain_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=10_000, soft_wrap=True), out


def test_without_a_terminal_progress_is_plain_whole_lines(tmp_path: Path) -> None:
    project = load_project(seed_project(tmp_path))
    console, out = plain_console()
    progress = RunProgress(project, console)
    with progress:
        progress(ev.RunStarted(run_id="r1", project="p", targets=[2005], planned=[1005, 2005], fresh=[]))
        progress(ev.ObjectStarted(run_id="r1", object_id=1005, stage="ingest", attempt=1))
        progress(ev.ObjectLoaded(run_id="r1", object_id=1005, stage="ingest", attempt=1))
        for attempt in (1, 2, 3):
            progress(ev.ObjectStarted(run_id="r1", object_id=2005, stage="standardize", attempt=attempt))
            progress(
                ev.ObjectFailed(
                    run_id="r1", object_id=2005, stage="standardize", attempt=attempt, error=LONG_ERROR, retryable=True
                )
            )
    name = project.objects[2005].name
    assert out.getvalue().splitlines() == [
        "run r1: 2 objects planned (ingest 1, standardize 1)",
        "stage ingest: 1/1 final (loaded 1)",
        f"object 2005 ({name}) attempt 1 failed, will retry (attempt 2 of 3): {LONG_ERROR}",
        f"object 2005 ({name}) attempt 2 failed, will retry (attempt 3 of 3): {LONG_ERROR}",
        f"object 2005 ({name}) attempt 3 failed, failed for good: {LONG_ERROR}",
        "stage standardize: 1/1 final (failed 1 (2005))",
    ]


def test_a_stage_detail_names_the_objects_that_failed_or_wait_for_a_retry(tmp_path: Path) -> None:
    project = load_project(seed_project(tmp_path))
    progress = RunProgress(project, Console(file=io.StringIO(), force_terminal=True, width=120))
    progress(ev.RunStarted(run_id="r1", project="p", targets=[], planned=[2001, 2003, 2005], fresh=[]))
    for oid in (2001, 2003, 2005):
        progress(ev.ObjectStarted(run_id="r1", object_id=oid, stage="standardize", attempt=3 if oid == 2005 else 1))
    assert progress.detail("standardize") == "running 3"
    progress(ev.ObjectLoaded(run_id="r1", object_id=2001, stage="standardize", attempt=1))
    progress(ev.ObjectFailed(run_id="r1", object_id=2003, stage="standardize", attempt=1, error="x", retryable=True))
    progress(ev.ObjectFailed(run_id="r1", object_id=2005, stage="standardize", attempt=3, error="x", retryable=True))
    assert progress.detail("standardize") == "loaded 1, failed 1 (2005), retrying 1 (2003: attempt 2)"


def test_objects_a_cancelled_run_skips_while_running_are_no_longer_counted_running(tmp_path: Path) -> None:
    project = load_project(seed_project(tmp_path))
    console, out = plain_console()
    progress = RunProgress(project, console)
    progress(ev.RunStarted(run_id="r1", project="p", targets=[], planned=[2001, 2003], fresh=[]))
    for oid in (2001, 2003):
        progress(ev.ObjectStarted(run_id="r1", object_id=oid, stage="standardize", attempt=1))
    progress(ev.ObjectLoaded(run_id="r1", object_id=2001, stage="standardize", attempt=1))
    progress(ev.ObjectSkipped(run_id="r1", object_id=2003, stage="standardize", reason="run cancelled"))
    assert out.getvalue().splitlines()[-1] == "stage standardize: 2/2 final (loaded 1, skipped 1)"


def test_the_summary_keeps_the_whole_error_on_a_narrow_terminal(tmp_path: Path) -> None:
    project = load_project(seed_project(tmp_path))
    state = ObjectState(2005, "standardize", status="failed", attempt=3, error=LONG_ERROR)
    out = io.StringIO()
    Console(file=out, force_terminal=True, width=120, color_system=None).print(
        summary_table(project, RunSummary("r1", "failed", 1.0, {2005: state}))
    )
    folded = "".join(line.strip("│┃ ").strip() for line in out.getvalue().splitlines())
    assert "".join(LONG_ERROR.split()) in "".join(folded.split())


def test_output_piped_to_a_file_is_never_wrapped() -> None:
    console = make_console()  # pytest captures stdout: not a terminal
    assert not console.is_terminal and console.width >= 1_000


def test_a_piped_run_prints_plain_lines_and_the_whole_failure(tmp_path: Path) -> None:
    path = seed_project(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "sluice", "run", str(path), "--simulate", "--delay-scale", "0", "--fail", "2005"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("run ") and lines[0].endswith("objects planned (ingest 5, standardize 8, application 6)")
    assert "stage standardize: 8/8 final (loaded 7, failed 1 (2005))" in lines
    assert any(line.startswith("run ") and ": failed in " in line for line in lines)  # the result on a line of its own
    assert not any("━" in line and "standardize" in line for line in lines)  # no progress bars in a log


def test_plan_names_the_objects_no_target_needs(tmp_path: Path) -> None:
    path = seed_project(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "sluice", "plan", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("not planned: 1002 (")
    assert "no target needs it (plan one with --target 1002)" in done.stdout
