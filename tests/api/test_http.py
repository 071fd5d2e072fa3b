"""GraphQL over HTTP: POST and GET, batches through the gate, the gate's refusals, GraphiQL served offline,
and the API mounted by ``sluice serve`` beside the control API with its metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from api_support import DDL, ROLES, HeaderGate, execute_all, served
from fastapi import FastAPI

from sluice.api.http import mount_api
from sluice.api.service import DataApi
from sluice.api.settings import ApiSettings


@pytest.fixture
def http(tmp_path: Path) -> Iterator[httpx.Client]:
    url = f"sqlite:///{tmp_path / 'hr.db'}"
    execute_all(url, DDL)
    settings = msgspec.convert({"sources": [{"connection": "hr", "tables": ["*"]}], "roles": ROLES}, ApiSettings)
    api = DataApi(settings, {"hr": url}, None, HeaderGate(max_batch=3))
    api.start(watch=False)
    app = FastAPI()
    mount_api(app, api)
    try:
        with served(app) as client:
            client.headers["x-role"] = "admin"
            yield client
    finally:
        api.close()


def test_post_get_and_graphql_bodies(http: httpx.Client) -> None:
    answer = http.post("/graphql", json={"query": "query($id: Int!) { employes_by_pk(id: $id) { nom } }", "variables": {"id": 1}})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == {"data": {"employes_by_pk": {"nom": "Ana"}}}
    answer = http.get(
        "/graphql", params={"query": "query($id: Int!) { employes_by_pk(id: $id) { nom } }", "variables": json.dumps({"id": 2})}
    )
    assert answer.json() == {"data": {"employes_by_pk": {"nom": "Bob"}}}
    answer = http.post("/graphql", content=b"{ dept(limit: 1) { id } }", headers={"content-type": "application/graphql"})
    assert answer.json() == {"data": {"dept": [{"id": 1}]}}
    assert http.get("/graphql", params={"query": "mutation { delete_dept_by_pk(id: 3) { id } }"}).status_code == 405


def test_roles_come_from_the_gate(http: httpx.Client) -> None:
    answer = http.post("/graphql", json={"query": "{ employes { id } }"}, headers={"x-role": "reader"})
    assert [r["id"] for r in answer.json()["data"]["employes"]] == [1, 3]
    answer = http.post("/graphql", json={"query": "{ employes { id } }"}, headers={"x-role": "nobody"})
    assert answer.status_code == 403
    assert answer.json()["errors"][0]["extensions"]["code"] == "permission-denied"


def test_batches_go_through_check_batch(http: httpx.Client) -> None:
    batch = [{"query": "{ dept_by_pk(id: 1) { nom } }"}, {"query": "{ nope }"}]
    answer = http.post("/graphql", json=batch)
    assert answer.status_code == 200
    first, second = answer.json()
    assert first == {"data": {"dept_by_pk": {"nom": "R&D"}}}
    assert second["errors"][0]["extensions"]["code"] == "validation-failed"
    answer = http.post("/graphql", json=batch * 2)
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["extensions"]["code"] == "batch-too-large"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "bad-request"),
        (b"{}", "bad-request"),
        (b'{"query": 3}', "bad-request"),
        (b'{"query": "{ a }", "variables": [1]}', "bad-request"),
        (b'{"query": "{ a"}', "parse-failed"),
    ],
)
def test_malformed_requests_are_400(http: httpx.Client, body: bytes, code: str) -> None:
    answer = http.post("/graphql", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["extensions"]["code"] == code


def test_graphiql_is_served_offline(http: httpx.Client) -> None:
    page = http.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "GraphiQL" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    for asset in ("graphiql.min.js", "graphiql.min.css", "react.production.min.js", "react-dom.production.min.js"):
        answer = http.get(f"/graphql/assets/{asset}")
        assert answer.status_code == 200, asset
        assert len(answer.content) > 1000


def test_sluice_serve_mounts_the_api_with_metrics(tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    from sluice.project.load import load_project
    from sluice.server.app import create_app
    from sluice.server.services import ServerSettings, Services

    execute_all(f"sqlite:///{tmp_path / 'hr.db'}", DDL)
    (tmp_path / "sluice.yaml").write_text(
        "connections:\n  hr: sqlite:///hr.db\n"
        "api:\n  sources:\n    - {connection: hr, tables: [employes, dept]}\n"
        "  operations:\n    employes: {list: employes, by_pk: employe_par_id}\n"
        "  roles:\n    anon:\n      employes: {select: {columns: [id, nom]}}\n"
    )
    project = load_project(str(tmp_path))
    assert project.api is not None
    app = create_app(Services(project, ServerSettings(workers=False, resume=False)))
    with served(app) as client:
        before = (
            REGISTRY.get_sample_value(
                "sluice_api_requests_total", {"api": "graphql", "operation": "employe_par_id", "role": "anon", "status": "200"}
            )
            or 0
        )
        answer = client.post("/graphql", json={"query": "{ employe_par_id(id: 2) { nom } }"})
        assert answer.json() == {"data": {"employe_par_id": {"nom": "Bob"}}}
        assert client.post(
            "/graphql", json={"query": "{ employes { nom } }"}, headers={"authorization": "Bearer x"}
        ).status_code in (401, 403)
        assert client.get("/health").status_code in (200, 503)
        metrics = client.get("/metrics").text
        assert "sluice_api_requests_total" in metrics
        after = REGISTRY.get_sample_value(
            "sluice_api_requests_total", {"api": "graphql", "operation": "employe_par_id", "role": "anon", "status": "200"}
        )
        assert after == before + 1


def test_an_unexpected_error_is_a_500_without_details(http: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    import sluice.api.http

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(sluice.api.http, "run_request", broken)
    answer = http.post("/graphql", json={"query": "{ dept { id } }"})
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/json"
    assert "secret" not in answer.text
    assert answer.json()["errors"][0]["extensions"]["code"] == "internal"  # the data API's shape, on the fast path too
