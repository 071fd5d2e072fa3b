"""The control API over a real server: runs, 409, cancel, objects with samples, bad requests, health, metrics."""

from __future__ import annotations

import datetime as dt
import decimal
import shutil
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from live_server import INSTANT, LiveServer

from helpers import load, wait_for, write_yaml
from sluice.project.model import Project
from sluice.runtime.coordinator import Coordinator
from sluice.runtime.run import open_backends
from sluice.runtime.summary import RunOptions
from sluice.server import models
from sluice.server.app import STATIC
from sluice.server.services import ServerSettings

FIELD = Path(__file__).resolve().parents[2] / "examples" / "seed-002-field" / "Objets.json"


def test_a_run_from_orchestrate_to_detail(server: LiveServer, seed: Project) -> None:
    with server.client() as client:
        run_id = server.start_run(client)
        detail = server.wait_run(client, run_id)
        models.RunDetail.model_validate(detail)
        assert detail["run_id"] == run_id and detail["project"] == seed.name
        assert detail["status"] == "succeeded"
        assert detail["finished_at"] >= detail["started_at"]
        ids = [o["object_id"] for o in detail["objects"]]
        assert ids == sorted(ids) and len(ids) == 19  # the final objects and their ancestors
        assert detail["counts"] == {
            "pending": 0,
            "ready": 0,
            "running": 0,
            "retrying": 0,
            "loaded": 19,
            "failed": 0,
            "skipped": 0,
        }
        assert {o["status"] for o in detail["objects"]} == {"loaded"}
        assert detail["options"]["simulate"] is True

        listing = client.get("/runs").json()
        models.RunList.model_validate(listing)
        assert [r["run_id"] for r in listing["runs"]] == [run_id]
        assert listing["runs"][0]["counts"]["loaded"] == 19

        second = server.start_run(client, targets=[3002], force=True)
        assert server.wait_run(client, second)["status"] == "succeeded"
        assert {o["object_id"] for o in client.get(f"/runs/{second}").json()["objects"]} == {1003, 1004, 2004, 3002}
        assert [r["run_id"] for r in client.get("/runs", params={"limit": 1}).json()["runs"]] == [second]


def test_second_orchestrate_while_active_is_409_and_cancel_ends_the_run(seed: Project) -> None:
    with LiveServer(seed, ServerSettings(simulate=True, delay_scale=2.0)) as server, server.client() as client:
        run_id = server.start_run(client, force=True)
        busy = client.post("/orchestrate")
        assert busy.status_code == 409
        assert busy.json()["active_run_id"] == run_id
        assert run_id in busy.json()["error"]
        running = client.get(f"/runs/{run_id}").json()
        assert running["status"] == "running" and running["finished_at"] is None

        cancel = client.post(f"/runs/{run_id}/cancel")
        assert cancel.status_code == 202
        assert cancel.json() == {"run_id": run_id, "status": "cancelling"}
        detail = server.wait_run(client, run_id)
        assert detail["status"] == "cancelled"
        assert any(o["reason"] == "run cancelled" for o in detail["objects"])

        again = client.post(f"/runs/{run_id}/cancel")
        assert again.status_code == 409
        assert "not active" in again.json()["error"]
        assert client.get("/health").json()["active_run_id"] is None
        next_run = server.start_run(client)
        assert next_run != run_id
        client.post(f"/runs/{next_run}/cancel")
        server.wait_run(client, next_run)


def test_run_detail_is_gzipped_when_the_client_accepts_it(server: LiveServer) -> None:
    with server.client() as client:
        run_id = server.wait_run(client, server.start_run(client))["run_id"]
        plain = client.get(f"/runs/{run_id}", headers={"Accept-Encoding": "identity"})
        zipped = client.get(f"/runs/{run_id}", headers={"Accept-Encoding": "br;q=1.0, gzip;q=0.8"})
        refused = client.get(f"/runs/{run_id}", headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in plain.headers and "content-encoding" not in refused.headers
    assert zipped.headers["content-encoding"] == "gzip" and zipped.headers["vary"] == "Accept-Encoding"
    assert int(zipped.headers["content-length"]) < len(plain.content) / 3
    assert zipped.json() == plain.json() == refused.json()


def test_forced_failures_show_in_the_run(seed: Project) -> None:
    failing = ServerSettings(simulate=True, delay_scale=0.0, fail=frozenset({2005}))
    with LiveServer(seed, failing) as server, server.client() as client:
        detail = server.wait_run(client, server.start_run(client))
    assert detail["status"] == "failed"
    by_id = {o["object_id"]: o for o in detail["objects"]}
    assert by_id[2005]["status"] == "failed" and "forced failure" in by_id[2005]["error"]
    assert by_id[3004]["status"] == "skipped" and by_id[3004]["reason"] == "parent 2005 failed"
    assert detail["counts"]["failed"] == 1 and detail["counts"]["skipped"] == 2


def sample_project(tmp_path: Path) -> Project:
    folder = tmp_path / "typed"
    folder.mkdir()
    table = pa.table(
        {
            "id": pa.array(range(1, 26), pa.int64()),
            "day": pa.array([dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(25)], pa.date32()),
            "amount": pa.array([decimal.Decimal(f"{i}.25") for i in range(25)], pa.decimal128(10, 2)),
            "blob": pa.array([bytes([i, 255]) for i in range(25)], pa.binary()),
            "at": pa.array([dt.datetime(2024, 1, 1, 12, i) for i in range(25)], pa.timestamp("us")),
            "ratio": pa.array([float("nan")] + [i / 4 for i in range(1, 25)], pa.float64()),
        }
    )
    pq.write_table(table, folder / "typed.parquet")
    write_yaml(
        folder,
        """
name: typed
objects:
  - {id: 1001, name: typed, source: {type: parquet, path: typed.parquet}}
  - {id: 2001, name: small, parents: [1001], sql: "select id, amount from typed where id <= 3"}
""",
    )
    return load(folder)


def test_objects_and_an_object_with_its_sample(tmp_path: Path) -> None:
    project = sample_project(tmp_path)
    with LiveServer(project) as server, server.client() as client:
        before = client.get("/objects").json()
        models.ObjectList.model_validate(before)
        assert before["project"] == "typed"
        assert [o["id"] for o in before["objects"]] == [1001, 2001]
        assert before["objects"][0] | {"last_status": None} == {
            "id": 1001,
            "name": "typed",
            "stage": "ingest",
            "kind": "source",
            "parents": [],
            "children": [2001],
            "last_status": None,
        }
        assert [s["name"] for s in before["stages"]] == ["ingest", "standardize", "application"]
        assert client.get("/objects/1001").json()["last_output"] is None

        run_id = server.start_run(client)
        assert server.wait_run(client, run_id)["status"] == "succeeded"

        assert {o["last_status"] for o in client.get("/objects").json()["objects"]} == {"loaded"}
        detail = client.get("/objects/1001").json()
        models.ObjectDetail.model_validate(detail)
        assert detail["definition"]["source"] == {"kind": "parquet", "path": "typed.parquet"}
        assert detail["last_state"]["run_id"] == run_id and detail["last_state"]["status"] == "loaded"
        output = detail["last_output"]
        assert output["rows"] == 25 and output["run_id"] == run_id and output["location"].endswith(".parquet")
        sample = output["sample"]
        assert sample["columns"] == ["id", "day", "amount", "blob", "at", "ratio"]
        assert len(sample["rows"]) == 10
        first = sample["rows"][0]
        assert first[:4] == [1, "2024-01-01", "0.25", "AP8="]  # bytes as base64
        assert first[4].startswith("2024-01-01T12:00")
        assert first[5] is None  # NaN has no JSON form
        small = client.get("/objects/2001").json()["last_output"]["sample"]
        assert small == {"columns": ["id", "amount"], "rows": [[1, "0.25"], [2, "1.25"], [3, "2.25"]]}


def test_a_dated_objects_last_output_is_its_plain_output_holding_the_latest_date(tmp_path: Path) -> None:
    """Day 2 ran, then day 1 (a backfill of an earlier date): the last load is day 1's own output, but what runs
    without a date, models and other objects read is the plain output, which keeps day 2's data."""
    from sluice.scheduling.launch import InProcessRuns
    from sluice.scheduling.requests import RunRequest

    folder = tmp_path / "daily"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "2026-01-01.csv").write_text("id\n1\n2\n", encoding="utf-8")
    (folder / "data" / "2026-01-02.csv").write_text("id\n3\n", encoding="utf-8")
    text = (
        "name: daily\nobjects:\n"
        "  - {id: 1001, name: day_file, source: {type: csv, path: 'data/{{ ds }}.csv'}}\n"
        "  - {id: 2001, name: day_rows, parents: [1001], sql: \"SELECT id, '{{ ds }}' AS ds FROM day_file\"}\n"
    )
    project = load(write_yaml(folder, text))
    with InProcessRuns(project) as runs:
        for day in (2, 1):
            assert runs(RunRequest("bf", "backfill", dt.datetime(2026, 1, day, tzinfo=dt.UTC))) == "succeeded"
    with LiveServer(project) as server, server.client() as client:
        detail = client.get("/objects/2001").json()
        models.ObjectDetail.model_validate(detail)
    output = detail["last_output"]
    assert output["location"] == "cleaned/day_rows.parquet" and output["rows"] == 1
    assert output["logical_date"] == "2026-01-02T00:00:00+00:00"
    assert output["sample"] == {"columns": ["id", "ds"], "rows": [[3, "2026-01-02"]]}


def test_an_object_detail_carries_its_objets_json_metadata(tmp_path: Path) -> None:
    folder = tmp_path / "field"
    folder.mkdir()
    shutil.copy(FIELD, folder / "Objets.json")
    with LiveServer(load(folder / "Objets.json")) as server, server.client() as client:
        detail = client.get("/objects/1001").json()
        models.ObjectDetail.model_validate(detail)
        assert detail["name"] == "Customers" and detail["stage"] == "ingest"
        metadata = detail["metadata"]
        assert metadata["URL"] == "https://crm.example.com/api/v2/customers"
        assert metadata["TypeAuthentification"] == "OAuth2"
        assert metadata["Fréquence"] == "Quotidienne" and metadata["AppendMode"] is False
        assert metadata["DataLakeRootFolder"] == "/lake/raw/crm" and metadata["Zone"] == "1-Raw"
        assert client.get("/objects/2009").status_code == 404  # left out (its parent 1007 is inactive)


def test_runs_of_other_projects_in_a_shared_state_store_are_not_shown(tmp_path: Path, seed: Project) -> None:
    shared = ServerSettings(simulate=True, delay_scale=0.0, state_url=f"sqlite:///{tmp_path / 'shared-state.db'}")
    with LiveServer(seed, shared) as server, server.client() as client:
        seed_run = server.wait_run(client, server.start_run(client))["run_id"]
    with LiveServer(sample_project(tmp_path), shared) as other, other.client() as client:
        assert client.get("/runs").json() == {"runs": []}
        answer = client.get(f"/runs/{seed_run}")
        assert answer.status_code == 404 and "in project 'typed'" in answer.json()["error"]


def test_server_resumes_a_run_left_unfinished(seed: Project) -> None:
    with open_backends(seed) as backends:
        crashed = Coordinator(seed, backends.bus, backends.state, backends.lake, RunOptions(simulate=True, delay_scale=0.0))
        run_id = crashed.start()  # published its first readies, then "crashed": no loop
        crashed.release_lease()  # and no lease renewed, as for a process that died
    with LiveServer(seed, INSTANT) as server, server.client() as client:
        detail = server.wait_run(client, run_id)
        assert detail["status"] == "succeeded"
        assert {o["status"] for o in detail["objects"]} == {"loaded"}


def test_server_resumes_only_a_run_no_live_process_drives_and_marks_older_dead_ones_interrupted(seed: Project) -> None:
    with open_backends(seed) as backends:
        older, newer, live = (
            Coordinator(seed, backends.bus, backends.state, backends.lake, RunOptions(simulate=True, delay_scale=0.0))
            for _ in range(3)
        )
        older_id, newer_id, live_id = older.start(), newer.start(), live.start()
        older.release_lease()  # their processes "died"; `live` is still driven (its lease renewed here)
        newer.release_lease()
    try:
        with LiveServer(seed, INSTANT) as server, server.client() as client:
            assert server.wait_run(client, newer_id)["status"] == "succeeded"
            detail = client.get(f"/runs/{older_id}").json()
            models.RunDetail.model_validate(detail)
            assert detail["status"] == "interrupted"
            assert {r["run_id"]: r["status"] for r in client.get("/runs").json()["runs"]} == {
                older_id: "interrupted",
                newer_id: "succeeded",
                live_id: "running",
            }
    finally:
        live.release_lease()


def test_server_leaves_a_scheduled_run_to_the_scheduler(seed: Project) -> None:
    """A run a schedule started is the scheduler's to resume (when it takes the lease): two coordinators of one run
    would split its events. The server resumes the run started by hand behind it."""
    with open_backends(seed) as backends:
        options = dict(simulate=True, delay_scale=0.0)
        crashed = Coordinator(seed, backends.bus, backends.state, backends.lake, RunOptions(**options))
        manual = crashed.start()
        crashed.release_lease()  # its process "died": nothing renews the run's lease
        scheduled = Coordinator(
            seed, backends.bus, backends.state, backends.lake, RunOptions(**options, trigger="schedule", schedule="nightly")
        ).start()
    with LiveServer(seed, INSTANT) as server, server.client() as client:
        assert server.wait_run(client, manual)["status"] == "succeeded"
        assert client.get(f"/runs/{scheduled}").json()["status"] == "running"


def test_events_last(server: LiveServer) -> None:
    with server.client() as client:
        none_yet = client.get("/events/last")
        assert none_yet.status_code == 404 and "no event" in none_yet.json()["error"]
        run_id = server.wait_run(client, server.start_run(client))["run_id"]
        last = client.get("/events/last").json()
        models.LastEvent.model_validate(last)
        assert last["event"]["type"] == "RunFinished" and last["event"]["run_id"] == run_id
        assert isinstance(last["id"], int)


def test_events_recent_are_the_events_before_an_id_oldest_first(server: LiveServer) -> None:
    with server.client() as client:
        assert client.get("/events/recent").json() == {"events": []}
        run_id = server.wait_run(client, server.start_run(client))["run_id"]
        last = client.get("/events/last").json()["id"]
        everything = client.get(f"/events/recent?before={last + 1}&limit=1000").json()
        models.RecentEvents.model_validate(everything)
        events = everything["events"]
        ids = [item["id"] for item in events]
        assert ids == sorted(set(ids)) and ids[-1] == last  # offsets grow, but need not be contiguous
        assert {item["event"]["run_id"] for item in events} == {run_id}
        assert (events[0]["event"]["type"], events[-1]["event"]["type"]) == ("RunStarted", "RunFinished")
        assert client.get(f"/events/recent?before={last}&limit=3").json()["events"] == events[-4:-1]
        assert client.get("/events/recent?limit=5").json()["events"] == events[-5:]
        assert client.get("/events/recent?limit=0").status_code == 400


def test_fresh_skips_are_told_apart_from_skips_after_a_failure(seed: Project) -> None:
    failing = ServerSettings(simulate=True, delay_scale=0.0, fail=frozenset({2005}))
    with LiveServer(seed, failing) as server, server.client() as client:
        server.wait_run(client, server.start_run(client, force=True))
        second = server.wait_run(client, server.start_run(client))
        by_id = {o["object_id"]: o for o in second["objects"]}
        assert by_id[3004]["status"] == by_id[3006]["status"] == "skipped"
        assert by_id[3004]["fresh"] is by_id[3006]["fresh"] is False  # their parent 2005 failed again
        assert by_id[1001]["status"] == "skipped" and by_id[1001]["fresh"] is True
        assert by_id[2005]["status"] == "failed" and by_id[2005]["fresh"] is False


BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("GET", "/runs/no-such-run", {}, 404, "no run with id 'no-such-run' in project 'Objets'"),
    ("POST", "/runs/no-such-run/cancel", {}, 404, "no run with id 'no-such-run'"),
    ("GET", "/events/stream?run_id=no-such-run", {}, 404, "no run with id 'no-such-run'"),
    ("GET", "/objects/4242", {}, 404, "no object 4242"),
    ("GET", "/objects/abc", {}, 400, "path parameter 'object_id'"),
    ("GET", "/objects/1.5", {}, 400, "path parameter 'object_id'"),
    (
        "POST",
        "/orchestrate",
        {"content": b'{"targets": [1001', "headers": {"content-type": "application/json"}},
        400,
        "not valid JSON",
    ),
    ("POST", "/orchestrate", {"content": b"[1, 2", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
    ("POST", "/orchestrate", {"json": [1001]}, 400, "the body"),
    ("POST", "/orchestrate", {"json": {"targets": "1001"}}, 400, "body field 'targets'"),
    ("POST", "/orchestrate", {"json": {"targets": [1.5]}}, 400, "body field 'targets.0'"),
    ("POST", "/orchestrate", {"json": {"targets": ["x"]}}, 400, "body field 'targets.0'"),
    ("POST", "/orchestrate", {"json": {"force": "yes"}}, 400, "body field 'force'"),
    ("POST", "/orchestrate", {"json": {"target": [1001]}}, 400, "body field 'target': unknown field"),
    ("POST", "/orchestrate", {"json": {"targets": [1001, 9999, 8888]}}, 400, "unknown target object id(s): 9999, 8888"),
    ("POST", "/orchestrate", {"content": b"force=true", "headers": {"content-type": "text/plain"}}, 400, "the body"),
    ("GET", "/runs?limit=0", {}, 400, "query parameter 'limit'"),
    ("GET", "/runs?limit=many", {}, 400, "query parameter 'limit'"),
    ("GET", "/events/stream?type=ObjectLoaded,Nope", {}, 400, "unknown event type(s) Nope"),
    ("GET", "/events/stream?last_event_id=abc", {}, 400, "Last-Event-ID must be an event id"),
    ("GET", "/events/stream", {"headers": {"Last-Event-ID": "x1"}}, 400, "Last-Event-ID must be an event id"),
    ("GET", "/events/stream?keepalive_s=0", {}, 400, "query parameter 'keepalive_s'"),
    ("GET", "/no/such/endpoint", {}, 404, "no such endpoint"),
    ("DELETE", "/runs/x", {}, 405, "DELETE is not allowed"),
    ("GET", "/static/no-such-file.js", {}, 404, "no such file: /static/no-such-file.js"),
]


def test_every_bad_request_gets_a_4xx_json_error_naming_the_problem(server: LiveServer) -> None:
    from prometheus_client import REGISTRY

    def server_errors() -> float:
        return sum(
            sample.value
            for metric in REGISTRY.collect()
            if metric.name == "sluice_http_requests"
            for sample in metric.samples
            if sample.name == "sluice_http_requests_total" and sample.labels["status"].startswith("5")
        )

    before = server_errors()
    with server.client() as client:
        for method, path, kwargs, status, needle in BAD_REQUESTS:
            answer = client.request(method, path, **kwargs)
            assert answer.status_code == status, (method, path, answer.text)
            assert answer.headers["content-type"] == "application/json", (method, path)
            body = answer.json()
            assert needle in body["error"], (method, path, body)
    assert server_errors() == before


def test_health_and_metrics(server: LiveServer) -> None:
    with server.client() as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "bus": "ok", "state": "ok", "active_run_id": None}
        server.wait_run(client, server.start_run(client))
        client.get("/runs/unknown")
        with client.stream("GET", "/events/stream") as stream:
            lines = stream.iter_lines()  # keep it: a collected iterator closes the connection
            assert next(lines) == "retry: 1000"
            text = client.get("/metrics").text
        assert 'sluice_http_requests_total{method="POST",route="/orchestrate",status="202"}' in text
        assert 'sluice_http_requests_total{method="GET",route="/runs/{run_id}",status="404"}' in text
        assert 'sluice_http_request_duration_seconds_bucket{le="0.5",method="GET",route="/runs/{run_id}"}' in text
        assert 'route="/events/stream"' in text
        sse_clients = [line for line in text.splitlines() if line.startswith("sluice_sse_clients ")]
        assert sse_clients and float(sse_clients[0].split()[1]) >= 1
        assert "sluice_sse_events_sent_total" in text
        assert 'sluice_objects_total{stage="ingest",status="loaded"}' in text
        wait_for(lambda: "sluice_bus_consumer_lag_messages{" in client.get("/metrics").text, 30, "the lag sampler")
        lag = client.get("/metrics").text
        assert 'group="workers.ingest",partition="0",topic="sluice.ready.ingest"' in lag


@pytest.mark.postgres
def test_health_is_503_when_the_state_store_is_gone(seed: Project, pg_db_url: str) -> None:
    import psycopg
    from psycopg import sql

    from servers_fixtures import with_database

    with LiveServer(seed, ServerSettings(state_url=pg_db_url)) as server, server.client() as client:
        assert client.get("/health").status_code == 200
        database = httpx.URL(pg_db_url).path.lstrip("/")
        with psycopg.connect(with_database(pg_db_url, "postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))
        answer = client.get("/health")
        assert answer.status_code == 503
        body = answer.json()
        assert body["status"] == "unavailable" and body["bus"] == "ok"
        assert body["state"] != "ok" and "state store does not answer" in body["error"]
        runs = client.get("/runs")
        assert runs.status_code == 503 and "PostgreSQL state store" in runs.json()["error"]


def test_openapi_documents_every_endpoint(server: LiveServer) -> None:
    with server.client() as client:
        spec = client.get("/openapi.json").json()
        assert client.get("/docs").status_code == 200
    expected = {
        ("post", "/orchestrate"),
        ("get", "/runs"),
        ("get", "/runs/{run_id}"),
        ("post", "/runs/{run_id}/cancel"),
        ("get", "/objects"),
        ("get", "/objects/{object_id}"),
        ("get", "/events/last"),
        ("get", "/events/recent"),
        ("get", "/events/stream"),
        ("get", "/health"),
        ("get", "/metrics"),
        ("get", "/syncs"),
        ("get", "/syncs/{name}"),
        ("get", "/streams"),
        ("get", "/backfills"),
        ("get", "/backfills/{backfill_id}"),
        ("get", "/schedules"),
    }
    found = {(method, path) for path, operations in spec["paths"].items() for method in operations}
    assert found == expected
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), (method, path)
            assert "422" not in operation["responses"], (method, path)
    assert spec["paths"]["/runs/{run_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RunDetail"
    }
    assert "400" in spec["paths"]["/orchestrate"]["post"]["responses"]


def test_index_serves_the_web_ui(server: LiveServer) -> None:
    with server.client() as client:
        answer = client.get("/")
    if (STATIC / "index.html").is_file():
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    else:
        assert answer.status_code == 404 and "web UI is not installed" in answer.json()["error"]


def test_runs_say_when_a_run_started_by_hand_has_lost_its_coordinator(server: LiveServer, seed: Project) -> None:
    import socket
    import subprocess
    import sys
    import time

    from sluice.runtime.run_lease import run_lease_key
    from sluice.state.base import RunRecord

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    with server.client() as client:
        finished = server.wait_run(client, server.start_run(client))["run_id"]
        with open_backends(seed) as backends:  # a `sluice run` killed while the server runs
            backends.state.create_run(RunRecord("killed", seed.name, "running", time.time(), options={"trigger": "manual"}), [])
            holder = f"{socket.gethostname()}:{gone.stdout.strip()}:x"
            assert backends.state.acquire_lease(run_lease_key(seed.name, "killed"), holder, time.time(), 30)
        listing = client.get("/runs").json()
        models.RunList.model_validate(listing)
        assert {r["run_id"]: (r["status"], r["coordinator_gone"]) for r in listing["runs"]} == {
            "killed": ("running", True),
            finished: ("succeeded", False),
        }
        assert client.get("/runs/killed").json()["coordinator_gone"] is True
