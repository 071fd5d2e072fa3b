"""``sluice serve`` as a user runs it: the URL printed, a run over HTTP, SIGTERM and SIGINT cancel the active run
and exit 0, a server killed mid-run is resumed by the next one, a taken port is a one-line error."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from helpers import check_ordering, events_of, load, loaded_count, seed_project, wait_for, write_yaml
from sluice.server.runs import RunManager
from sluice.server.services import ServerSettings, Services

SLUICE = [sys.executable, "-m", "sluice"]


@contextmanager
def serving(path: Path, log: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``sluice serve PATH --port 0 ARGS``; yields the process and the URL it printed. Killed if still running after."""
    with log.open("wb") as err:
        process = subprocess.Popen([*SLUICE, "serve", str(path), "--port", "0", *args], stdout=subprocess.DEVNULL, stderr=err)
    try:
        url = ""

        def printed_url() -> bool:
            nonlocal url
            found = re.search(r"at (http://127\.0\.0\.1:\d+) ", log.read_text())
            url = found.group(1) if found else ""
            return bool(url) or process.poll() is not None

        wait_for(printed_url, 60, "the server to print its URL")
        assert url, log.read_text()
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_serve_runs_on_request_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    path = seed_project(tmp_path)
    log = tmp_path / "serve.log"
    with (
        serving(path, log, "--simulate", "--delay-scale", "1") as (process, url),
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        wait_for(lambda: client.get("/health").status_code == 200, 30, "health")
        run_id = client.post("/orchestrate", json={"force": True}).json()["run_id"]
        wait_for(lambda: client.get(f"/runs/{run_id}").json()["counts"]["loaded"] >= 1, 60, "an object loaded")
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log.read_text()
    text = log.read_text()
    assert "Traceback" not in text
    assert f"cancelling run {run_id}: the server is stopping" in text
    runs = subprocess.run([*SLUICE, "runs", str(path), "--json"], capture_output=True, text=True, check=True)
    assert '"status": "cancelled"' in runs.stdout


def test_sigint_with_no_run_exits_zero(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with serving(seed_project(tmp_path), log, "--log-format", "json") as (process, url):
        assert httpx.get(url + "/health", timeout=30).json()["status"] == "ok"
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0, log.read_text()
    assert '"logger": "uvicorn.error"' in log.read_text()  # uvicorn's lines go through Sluice's JSON logging


def killed_mid_run(path: Path, log: Path) -> str:
    """Start a run on ``sluice serve PATH --simulate --delay-scale 0.4`` and ``kill -9`` the server once six objects
    are loaded; the run's id."""
    state_db = path.parent / ".sluice" / "state.db"
    with serving(path, log, "--simulate", "--delay-scale", "0.4") as (process, url):
        run_id: str = httpx.post(url + "/orchestrate", timeout=30).json()["run_id"]
        wait_for(lambda: loaded_count(state_db) >= 6, 60, "six objects loaded")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    return run_id


def test_a_server_killed_mid_run_is_resumed_by_the_next(tmp_path: Path) -> None:
    path = seed_project(tmp_path)
    run_id = killed_mid_run(path, tmp_path / "first.log")
    log = tmp_path / "second.log"
    with (
        serving(path, log, "--simulate", "--delay-scale", "0.4") as (process, url),
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        wait_for(lambda: client.get(f"/runs/{run_id}").json()["status"] != "running", 120, "the resumed run to finish")
        detail = client.get(f"/runs/{run_id}").json()
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    assert detail["status"] == "succeeded"
    assert {o["status"] for o in detail["objects"]} == {"loaded"}
    assert f"resumed run {run_id}" in log.read_text()
    project = load(path)
    check_ordering(project, events_of(project, run_id))


def test_the_next_server_resumes_the_run_even_when_its_workers_would_take_the_leftover_work_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load the next server's workers took the killed server's leftover work before the run was resumed: they
    found the run's lease free, marked the run interrupted, and it was never resumed. It is resumed before they start
    (here its resumption is held back, as a loaded machine does, while workers already running would poll)."""
    path = seed_project(tmp_path)
    run_id = killed_mid_run(path, tmp_path / "first.log")
    resume = RunManager.resume_unfinished

    def late(self: RunManager) -> str | None:
        time.sleep(2.0)
        return resume(self)

    monkeypatch.setattr(RunManager, "resume_unfinished", late)
    services = Services(load(path), ServerSettings(simulate=True, delay_scale=0.4))
    services.start()
    try:
        state = services.backends.state
        wait_for(lambda: state.get_run(run_id).status != "running", 120, "the resumed run to finish")
        assert state.get_run(run_id).status == "succeeded"
    finally:
        services.stop()


def test_a_taken_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*SLUICE, "serve", str(seed_project(tmp_path)), "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--port" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_unknown_fail_ids(tmp_path: Path) -> None:
    result = subprocess.run(
        [*SLUICE, "serve", str(seed_project(tmp_path)), "--fail", "4242"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "--fail names unknown object id(s) [4242]" in result.stderr


def test_the_control_token_from_a_file_sluice_yaml_names_guards_starting_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLUICE_CONTROL_TOKEN", raising=False)
    folder = tmp_path / "shop"
    write_yaml(folder, "name: shop\nobjects:\n  - {id: 1001}\nserve:\n  control_token_file: control.secret\n")
    (folder / "control.secret").write_text("t0ken-in-a-file\n")
    with serving(folder, tmp_path / "serve.log") as (_, url), httpx.Client(base_url=url, timeout=30) as client:
        assert client.post("/orchestrate", json={}).status_code == 401
        started = client.post("/orchestrate", json={}, headers={"Authorization": "Bearer t0ken-in-a-file"})
        assert started.status_code == 202, started.text


def test_serve_refuses_to_start_when_the_variable_sluice_yaml_names_is_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHOP_CONTROL_UNSET", raising=False)
    path = write_yaml(tmp_path, "name: shop\nobjects:\n  - {id: 1001}\nserve: {control_token_env: SHOP_CONTROL_UNSET}\n")
    done = subprocess.run([*SLUICE, "serve", str(path), "--port", "0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {path}:4: serve: control_token_env names SHOP_CONTROL_UNSET, which is not set (or empty) in this "
        "environment; set it to the token (e.g. openssl rand -hex 32)"
    ]
