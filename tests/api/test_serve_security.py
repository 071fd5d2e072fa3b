"""``sluice serve`` with the production gate: API keys from the state store, HS256 JWTs, rate limits and a
gateway route, all on the served app (not a test gate)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import jwt
import pytest
from api_support import DDL, execute_all, served
from fastapi import FastAPI, Request

from sluice.api.security.keys import open_key_store
from sluice.project.load import load_project
from sluice.server.app import create_app
from sluice.server.serve import warn_open_control
from sluice.server.services import ServerSettings, Services

SECRET = "s" * 40
PROJECT = """\
connections:
  hr: sqlite:///hr.db
api:
  sources:
    - {connection: hr, tables: [employes, dept]}
  operations:
    employes: {list: employes, by_pk: employe_par_id}
  auth:
    anon_role: null
    jwt: {algorithms: [HS256], secret: "%s", audience: hr}
  roles:
    reader:
      employes: {select: {columns: [id, nom]}}
  limits:
    rate: {per_key: 3/minute}
  proxies:
    - {path: /svc/echo, upstream: "%s", roles: [reader]}
"""


def upstream() -> FastAPI:
    app = FastAPI()

    @app.get("/{rest:path}")
    def echo(rest: str, request: Request) -> dict[str, str]:
        return {"path": rest, "role": request.headers.get("x-sluice-role", "")}

    return app


def test_keys_tokens_limits_and_proxies_on_the_served_app(tmp_path: Path) -> None:
    execute_all(f"sqlite:///{tmp_path / 'hr.db'}", DDL)
    with served(upstream()) as up:
        (tmp_path / "sluice.yaml").write_text(PROJECT % (SECRET, str(up.base_url)))
        project = load_project(str(tmp_path))
        _, key = open_key_store(project.resolve_state_url(), project.root).create("reader", "ann")
        query = {"query": "{ employe_par_id(id: 2) { nom } }"}
        with served(create_app(Services(project, ServerSettings(workers=False, resume=False)))) as client:
            refused = client.post("/graphql", json=query)
            assert refused.status_code == 401, refused.text  # anon_role: null

            by_key = client.post("/graphql", json=query, headers={"x-api-key": key})
            assert by_key.json() == {"data": {"employe_par_id": {"nom": "Bob"}}}

            token = jwt.encode({"role": "reader", "sub": "bo", "aud": "hr", "exp": time.time() + 60}, SECRET, "HS256")
            by_token = client.post("/graphql", json=query, headers={"authorization": f"Bearer {token}"})
            assert by_token.json() == {"data": {"employe_par_id": {"nom": "Bob"}}}
            wrong_aud = jwt.encode({"role": "reader", "aud": "other", "exp": time.time() + 60}, SECRET, "HS256")
            assert client.post("/graphql", json=query, headers={"authorization": f"Bearer {wrong_aud}"}).status_code == 401

            proxied = client.get("/svc/echo/a/b", headers={"x-api-key": key})
            assert proxied.json() == {"path": "a/b", "role": "reader"}

            third = client.post("/graphql", json=query, headers={"x-api-key": key})  # the key's 3rd request of 3/minute
            assert third.status_code == 200, third.text
            over = client.post("/graphql", json=query, headers={"x-api-key": key})
            assert over.status_code == 429 and int(over.headers["retry-after"]) > 0, over.headers


def test_serving_beyond_loopback_without_a_control_token_warns_that_runs_can_be_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "sluice.yaml").write_text(
        "connections:\n  hr: sqlite:///hr.db\napi:\n  sources: [{connection: hr, tables: ['*']}]\n"
    )
    project = load_project(str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="sluice.server"):
        for loopback in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
            warn_open_control(project, loopback)
        warn_open_control(project, "0.0.0.0", token="s3cret")
        assert not caplog.records
        warn_open_control(project, "0.0.0.0")
    [record] = caplog.records
    message = record.getMessage()
    assert "0.0.0.0" in message and "without a control token" in message and "SLUICE_CONTROL_TOKEN" in message
