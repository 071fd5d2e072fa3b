"""GET /syncs and GET /syncs/{name} over a real server, from status files written by sluice.cdc.status.write_status."""

from __future__ import annotations

import os
import threading
import time

import pytest
from live_server import INSTANT, LiveServer

from sluice.cdc.status import SyncStatus, TableStatus, write_status
from sluice.errors import SluiceError
from sluice.project.model import Project
from sluice.server import syncs as syncs_module
from sluice.server.syncs import STALE_AFTER_S, SyncHost, runtime_hook


def employees_status() -> SyncStatus:
    table = TableStatus(
        "hr.employes",
        "public.employes",
        "hr -> warehouse",
        state="streaming",
        position="mysql-bin.000003:4567",
        lag_s=0.25,
        applied={"snapshot": 100, "insert": 3, "update": 2},
        captured={"insert": 3, "update": 2},
        snapshot_rows=100,
        snapshot_total=100,
    )
    return SyncStatus(
        "employees",
        "hr",
        "warehouse",
        "hr -> warehouse",
        state="streaming",
        pid=os.getpid(),
        roles=["capture:hr"],
        tables=[table],
    )


def test_syncs_lists_every_sync_merged_from_its_status_files(seed: Project) -> None:
    work = seed.work_dir
    write_status(work, employees_status())
    apply_half = SyncStatus(
        "employees", "hr", "warehouse", "hr -> warehouse", state="error", error="boom", roles=["apply:warehouse"]
    )
    apply_half.tables = [TableStatus("hr.dept", "public.dept", "hr -> warehouse", state="error", error="boom", dead_letters=4)]
    write_status(work, apply_half, role_suffix="apply")
    write_status(work, SyncStatus("articles", "a", "b", "a -> b"))
    (work / "syncs" / "broken.json").write_text("{not json")
    with LiveServer(seed, INSTANT) as server, server.client() as client:
        body = client.get("/syncs").json()
        assert [s["name"] for s in body["syncs"]] == ["articles", "employees"]
        employees = body["syncs"][1]
        assert employees["state"] == "error" and employees["error"] == "boom"
        assert employees["roles"] == ["capture:hr", "apply:warehouse"] and employees["stale"] is False
        assert [t["source_table"] for t in employees["tables"]] == ["hr.employes", "hr.dept"]
        first = employees["tables"][0]
        assert first["applied"] == {"snapshot": 100, "insert": 3, "update": 2}
        # capture runs, apply stopped in error: the table does not stream, its lag is unknown
        assert (first["state"], first["note"], first.get("lag_s")) == ("stopped", "apply not running (error)", None)
        assert employees["roles_not_running"] == ["apply:warehouse"]
        assert [(p["roles"], p["running"]) for p in employees["processes"]] == [
            (["capture:hr"], True),
            (["apply:warehouse"], False),
        ]
        assert first["position"] == "mysql-bin.000003:4567" and employees["tables"][1]["dead_letters"] == 4
        one = client.get("/syncs/articles")
        assert one.status_code == 200 and one.json()["tables"] == [] and one.json()["direction"] == "a -> b"


def test_unknown_sync_is_404_naming_the_known_ones(seed: Project) -> None:
    with LiveServer(seed, INSTANT) as server, server.client() as client:
        empty = client.get("/syncs/nope")
        assert empty.status_code == 404 and "none yet" in empty.json()["error"]
        assert client.get("/syncs").json() == {"syncs": []}
        write_status(seed.work_dir, employees_status())
        answer = client.get("/syncs/nope")
        assert answer.status_code == 404
        assert (
            answer.json()["known"] == ["employees"]
            and "'nope'" in answer.json()["error"]
            and "employees" in answer.json()["error"]
        )


def test_a_status_not_refreshed_is_stale(seed: Project) -> None:
    path = write_status(seed.work_dir, employees_status())
    old = employees_status()
    old.updated_at = time.time() - STALE_AFTER_S - 5
    import msgspec

    path.write_bytes(msgspec.json.encode(old))
    with LiveServer(seed, INSTANT) as server, server.client() as client:
        assert client.get("/syncs/employees").json()["stale"] is True


def test_hosted_syncs_run_until_the_host_stops(seed: Project) -> None:
    started: list[str] = []
    stopped: list[str] = []

    def host(project: Project, name: str, stop: threading.Event) -> None:
        started.append(name)
        stop.wait()
        stopped.append(name)

    hosted = SyncHost(seed, ["employees", "articles"], hook=host)
    hosted.start()
    deadline = time.monotonic() + 30
    while len(started) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(started) == ["articles", "employees"] and stopped == []
    hosted.stop()
    assert sorted(stopped) == ["articles", "employees"]


def test_the_runtime_hook_is_found_and_a_missing_one_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from sluice.cdc.runtime import host_sync

    assert runtime_hook() is host_sync
    monkeypatch.setattr(syncs_module, "RUNTIME_HOOK", "sluice.cdc.runtime:no_such_hook")
    with pytest.raises(SluiceError, match="no_such_hook"):
        runtime_hook()
