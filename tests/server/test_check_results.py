"""A run's data-quality check results as the run and object JSON show them: read from its CheckFinished events on
the bus (an embedded bus here, with events written as workers write them), latest attempt only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from live_server import LiveServer

from helpers import wait_for
from sluice import events as ev
from sluice.bus import names
from sluice.bus.base import Bus
from sluice.bus.embedded import EmbeddedBus
from sluice.project.model import Project
from sluice.server.check_results import CheckResults, check_state
from sluice.server.services import ServerSettings
from sluice.state.base import RunRecord


def check(
    run_id: str,
    object_id: int,
    name: str,
    status: str,
    *,
    severity: str = "error",
    attempt: int = 1,
    failing: int = 0,
    covered: str = "load",
    rows_checked: int | None = 10,
) -> ev.CheckFinished:
    return ev.CheckFinished(
        run_id=run_id,
        object_id=object_id,
        stage="ingest",
        attempt=attempt,
        check=name,
        kind="not_null",
        severity=severity,
        status=status,
        failing_rows=failing,
        sample=[str(i) for i in range(min(failing, 3))],
        message=f"{failing} rows",
        duration_s=0.01,
        covered=covered,
        rows_checked=rows_checked,
    )


def publish(bus: Bus, *events: ev.Event) -> None:
    bus.publish(names.EVENTS_TOPIC, [(None, ev.encode(e)) for e in events])


def test_results_per_object_keep_the_latest_attempt_and_stop_at_the_run_end(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus.db")
    try:
        publish(bus, ev.RunFinished(run_id="r0", status="succeeded", duration_s=1.0))  # an earlier run
        start = bus.end_offset(names.EVENTS_TOPIC)
        publish(
            bus,
            ev.RunStarted(run_id="r1", project="p", targets=[2], planned=[1, 2]),
            check("r1", 1, "not_null_id", "failed", failing=4),
            check("other", 1, "not_null_id", "passed"),  # another run's: not ours
        )
        results = CheckResults(bus)
        running = RunRecord("r1", "p", "running", 0.0, first_offset=start)
        first = results.of_run(running)
        assert [r["status"] for r in first[1]] == ["failed"] and first[1][0]["sample"] == ["0", "1", "2"]
        publish(
            bus,
            check("r1", 1, "not_null_id", "passed", attempt=2),  # the retry's checks replace the first attempt's
            check("r1", 1, "not_null_id", "failed", attempt=1, failing=9),  # late: ignored
            check("r1", 2, "unique_id", "failed", severity="warn", failing=2),
            check("r1", 2, "row_count", "passed"),
            ev.RunFinished(run_id="r1", status="succeeded", duration_s=2.0),
            check("r1", 2, "after_the_end", "failed"),  # after RunFinished: not read
        )
        finished = results.of_run(running)  # read on from where it stopped
        assert {oid: [(r["check"], r["status"], r["attempt"]) for r in rs] for oid, rs in finished.items()} == {
            1: [("not_null_id", "passed", 2)],
            2: [("unique_id", "failed", 1), ("row_count", "passed", 1)],
        }
        assert (check_state(finished[1]), check_state(finished[2]), check_state([])) == ("passed", "warned", None)
        publish(bus, check("r1", 3, "late", "failed"))
        assert results.of_run(RunRecord("r1", "p", "succeeded", 0.0, first_offset=start)) == finished  # cached once over
        assert CheckResults(bus).of_run(RunRecord("r1", "p", "succeeded", 0.0, first_offset=start)) == finished
    finally:
        bus.close()


def test_run_and_object_json_carry_the_check_results(seed: Project) -> None:
    """No workers: the run stays active while the results are written, as a worker writes them before the object's
    outcome; then it is cancelled, and its finished detail still carries them."""
    settings = ServerSettings(simulate=True, delay_scale=0.0, workers=False)
    with LiveServer(seed, settings) as server, server.client() as client:
        run_id = client.post("/orchestrate", json={"targets": [1005]}).json()["run_id"]
        bus = server.services.backends.bus
        publish(bus, check(run_id, 1005, "not_null_id", "failed", failing=3))
        publish(bus, check(run_id, 1005, "unique_id", "failed", severity="warn", failing=1, covered="table", rows_checked=None))

        def shown(detail: dict[str, Any]) -> dict[int, Any]:
            return {o["object_id"]: (o.get("check_state"), o.get("checks")) for o in detail["objects"] if "checks" in o}

        wait_for(lambda: 1005 in shown(client.get(f"/runs/{run_id}").json()), 60, "the active run's detail to show the checks")
        assert client.post(f"/runs/{run_id}/cancel").status_code == 202
        wait_for(lambda: client.get(f"/runs/{run_id}").json()["status"] != "running", 60, "the run to be cancelled")
        state, checks = shown(client.get(f"/runs/{run_id}").json())[1005]
        assert state == "failed"
        assert [(c["check"], c["severity"], c["status"], c["failing_rows"], c["sample"]) for c in checks] == [
            ("not_null_id", "error", "failed", 3, ["0", "1", "2"]),
            ("unique_id", "warn", "failed", 1, ["0"]),
        ]
        assert [(c["covered"], c["rows_checked"]) for c in checks] == [("load", 10), ("table", None)]
        assert list(shown(client.get(f"/runs/{run_id}").json())) == [1005]  # objects without results carry none
        last = client.get("/objects/1005").json()["last_state"]
        assert last["run_id"] == run_id and last["check_state"] == "failed" and len(last["checks"]) == 2
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
        assert {"check", "status", "failing_rows", "sample", "covered", "rows_checked"} <= set(
            schemas["CheckResult"]["properties"]
        )
