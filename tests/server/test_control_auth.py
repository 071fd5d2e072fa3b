"""The control token: with one set, starting and cancelling runs need ``Authorization: Bearer <token>`` (401 with
``WWW-Authenticate`` otherwise), while reading runs, objects, health and the UI's page stay open; the token may
come from SLUICE_CONTROL_TOKEN."""

from __future__ import annotations

import pytest
from live_server import LiveServer

from sluice.project.model import Project
from sluice.server.services import ServerSettings

TOKEN = "c0ntrol-t0ken"


def test_mutating_endpoints_need_the_token_and_reading_ones_do_not(seed: Project) -> None:
    settings = ServerSettings(simulate=True, delay_scale=2.0, control_token=TOKEN)
    with LiveServer(seed, settings) as server, server.client() as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            refused = client.post("/orchestrate", json={"force": True}, headers=headers)
            assert refused.status_code == 401, refused.text
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert "control token" in refused.json()["error"]
        assert client.get("/runs").json()["runs"] == []  # nothing was started
        assert client.get("/health").status_code == 200
        assert client.get("/objects").status_code == 200
        assert client.get("/").status_code == 200
        assert client.get("/openapi.json").json()["components"]["securitySchemes"]["controlToken"]["scheme"] == "bearer"

        authorized = {"Authorization": f"Bearer {TOKEN}"}
        started = client.post("/orchestrate", json={"force": True}, headers=authorized)
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        assert client.get(f"/runs/{run_id}").json()["status"] == "running"
        assert client.post(f"/runs/{run_id}/cancel").status_code == 401
        assert client.post(f"/runs/{run_id}/cancel", headers=authorized).status_code == 202
        assert server.wait_run(client, run_id)["status"] == "cancelled"


def test_the_token_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_CONTROL_TOKEN", f" {TOKEN} ")
    assert ServerSettings().control_token == TOKEN
    monkeypatch.setenv("SLUICE_CONTROL_TOKEN", "")
    assert ServerSettings().control_token is None
