"""The data API's request metrics and log lines (sluice.api.metrics) on the app ``sluice serve`` builds:
GraphQL and REST answers and refusals counted by operation and role, one JSON line per request without
credentials, variable values or SQL."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import jwt
import pytest
from api_support import DDL, execute_all, served
from prometheus_client import REGISTRY

from sluice.api import metrics
from sluice.observability.logs import JsonFormatter

SECRET = "m" * 40
PROJECT = """\
connections:
  hr: sqlite:///hr.db
api:
  sources:
    - {connection: hr, tables: [employes, dept]}
  operations:
    employes: {list: employes, by_pk: employe_par_id}
  auth:
    anon_role: anon
    jwt: {algorithms: [HS256], secret: "%s", audience: hr}
  roles:
    anon:
      employes: {select: {columns: [id, nom]}}
    reader:
      employes: {select: {columns: [id, nom]}}
  limits:
    rate: {per_subject: 2/minute}
"""


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Lines(logging.Handler):
    """The JSON lines of ``sluice.api.requests``, as ``--log-format json`` writes them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def parsed(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.lines]


@contextmanager
def request_lines() -> Iterator[Lines]:
    logger = logging.getLogger("sluice.api.requests")
    handler, level = Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def http(tmp_path: Path) -> Iterator[httpx.Client]:
    from sluice.project.load import load_project
    from sluice.server.app import create_app
    from sluice.server.services import ServerSettings, Services

    execute_all(f"sqlite:///{tmp_path / 'hr.db'}", DDL)
    (tmp_path / "sluice.yaml").write_text(PROJECT % SECRET)
    app = create_app(Services(load_project(str(tmp_path)), ServerSettings(workers=False, resume=False)))
    with served(app) as client:
        yield client


def bearer(claims: dict[str, object]) -> dict[str, str]:
    token = jwt.encode({"aud": "hr", "exp": time.time() + 60, **claims}, SECRET, "HS256")
    return {"authorization": f"Bearer {token}"}


def test_observe_counts_times_and_logs_one_line_per_request() -> None:
    labels = {"api": "graphql", "operation": "observe_test", "role": "editor"}
    with request_lines() as logged:
        metrics.observe("graphql", "observe_test", "editor", 200, None, 0.0042)
        metrics.observe("graphql", "observe_test", "editor", 400, "validation-failed", 0.002)
    assert value("sluice_api_requests_total", **labels, status="200") == 1
    assert value("sluice_api_errors_total", **labels, code="validation-failed") == 1
    assert value("sluice_api_request_duration_seconds_count", **labels) == 2
    assert value("sluice_api_request_duration_seconds_bucket", **labels, le="0.0025") == 1
    ok, failed = logged.parsed()
    assert {k: ok[k] for k in ("api", "operation", "role", "status", "duration_ms")} == {
        **labels,
        "status": 200,
        "duration_ms": 4.2,
    }
    assert "code" not in ok and failed["code"] == "validation-failed" and failed["status"] == 400
    assert ok["logger"] == "sluice.api.requests" and ok["level"] == "info"


def test_graphql_answers_and_refusals_are_counted_by_operation_and_role(http: httpx.Client) -> None:
    anon = {"api": "graphql", "operation": "employe_par_id", "role": "anon"}
    refused = {"api": "graphql", "operation": metrics.UNKNOWN, "role": metrics.UNKNOWN}
    before = {
        "ok": value("sluice_api_requests_total", **anon, status="200"),
        "timed": value("sluice_api_request_duration_seconds_count", **anon),
        "401": value("sluice_api_requests_total", **refused, status="401"),
        "invalid": value("sluice_api_errors_total", **refused, code="invalid-token"),
        "400": value("sluice_api_errors_total", **refused, code="bad-request"),
        "429": value("sluice_api_requests_total", **refused, status="429"),
        "limited": value("sluice_api_rate_limited_total", api="graphql", role="reader", limit="subject"),
    }
    query = {"query": "query($id: Int!) { employe_par_id(id: $id) { nom } }", "variables": {"id": 2}}
    with request_lines() as logged:
        assert http.post("/graphql", json=query).json() == {"data": {"employe_par_id": {"nom": "Bob"}}}
        assert http.post("/graphql", json=query, headers={"authorization": "Bearer forged.token.zz"}).status_code == 401
        assert http.post("/graphql", content=b"{not json", headers={"content-type": "application/json"}).status_code == 400
        reader = bearer({"role": "reader", "sub": "rita"})
        statuses = [http.post("/graphql", json=query, headers=reader).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
    assert value("sluice_api_requests_total", **anon, status="200") == before["ok"] + 1
    assert value("sluice_api_request_duration_seconds_count", **anon) == before["timed"] + 1
    assert value("sluice_api_requests_total", **refused, status="401") == before["401"] + 1
    assert value("sluice_api_errors_total", **refused, code="invalid-token") == before["invalid"] + 1
    assert value("sluice_api_errors_total", **refused, code="bad-request") == before["400"] + 1
    assert value("sluice_api_requests_total", **refused, status="429") == before["429"] + 1
    assert value("sluice_api_rate_limited_total", api="graphql", role="reader", limit="subject") == before["limited"] + 1
    lines = logged.parsed()
    assert [(line["operation"], line["role"], line["status"], line.get("code")) for line in lines] == [
        ("employe_par_id", "anon", 200, None),
        ("-", "-", 401, "invalid-token"),
        ("-", "-", 400, "bad-request"),
        ("employe_par_id", "reader", 200, None),
        ("employe_par_id", "reader", 200, None),
        ("-", "-", 429, "rate-limited"),
    ]
    text = "\n".join(logged.lines)
    assert "forged" not in text and "Bob" not in text and "SELECT" not in text.upper() and "rita" not in text


def test_rest_requests_are_counted_and_logged_with_their_role(http: httpx.Client) -> None:
    labels = {"api": "rest", "operation": "GET employes", "role": "anon"}
    before = value("sluice_api_request_duration_seconds_count", **labels)
    with request_lines() as logged:
        assert http.get("/rest/employes?select=id,nom&id=eq.1").json() == [{"id": 1, "nom": "Ana"}]
    assert value("sluice_api_request_duration_seconds_count", **labels) == before + 1
    (line,) = logged.parsed()
    assert (line["api"], line["operation"], line["role"], line["status"]) == ("rest", "GET employes", "anon", 200)
    assert "Ana" not in logged.lines[0] and "eq.1" not in logged.lines[0]


def test_rest_reads_answered_ahead_of_the_routes_keep_their_http_metrics(http: httpx.Client) -> None:
    table = {"route": "/rest/{table}", "method": "GET", "status": "200"}
    row = {"route": "/rest/{table}/{key}", "method": "GET", "status": "200"}
    before = value("sluice_http_requests_total", **table), value("sluice_http_requests_total", **row)
    answer = http.get("/rest/employes?select=id,nom&id=eq.1", headers={"Prefer": "count=exact"})
    assert answer.json() == [{"id": 1, "nom": "Ana"}]
    assert answer.headers["content-range"] == "0-0/1" and answer.headers["preference-applied"] == "count=exact"
    assert http.get("/rest/employes/1?select=nom").json() == {"nom": "Ana"}
    after = value("sluice_http_requests_total", **table), value("sluice_http_requests_total", **row)
    assert after == (before[0] + 1, before[1] + 1)
    missing = http.get("/rest/nothing")
    assert missing.status_code == 404 and missing.json()["code"] == "SLR205"
    assert http.get("/rest/openapi.json").json()["openapi"].startswith("3.")


def test_log_requests_false_keeps_the_metrics_and_drops_the_lines(tmp_path: Path) -> None:
    from sluice.project.load import load_project
    from sluice.server.app import create_app
    from sluice.server.services import ServerSettings, Services

    execute_all(f"sqlite:///{tmp_path / 'hr.db'}", DDL)
    (tmp_path / "sluice.yaml").write_text((PROJECT % SECRET).replace("api:\n", "api:\n  log_requests: false\n"))
    app = create_app(Services(load_project(str(tmp_path)), ServerSettings(workers=False, resume=False)))
    anon = {"api": "graphql", "operation": "employe_par_id", "role": "anon"}
    before = value("sluice_api_requests_total", **anon, status="200")
    logger = logging.getLogger("sluice.api.requests")
    handler = Lines()
    logger.addHandler(handler)
    try:
        with served(app) as http:
            query = {"query": "query($id: Int!) { employe_par_id(id: $id) { nom } }", "variables": {"id": 2}}
            for _ in range(2):
                assert http.post("/graphql", json=query).json() == {"data": {"employe_par_id": {"nom": "Bob"}}}
            assert http.get("/rest/employes?id=eq.2&select=nom").json() == [{"nom": "Bob"}]
    finally:
        logger.removeHandler(handler)
    assert value("sluice_api_requests_total", **anon, status="200") == before + 2
    assert handler.lines == []
    assert logger.level == logging.NOTSET  # put back when the server stopped


def test_request_lines_switch() -> None:
    logger = logging.getLogger("sluice.api.requests")
    with request_lines() as logged:
        with metrics.request_lines(False):
            metrics.observe("graphql", "switch_test", "r", 200, None, 0.001)
        with metrics.request_lines(True):
            metrics.observe("graphql", "switch_test", "r", 200, None, 0.001)
        assert logger.level == logging.INFO
    assert len(logged.lines) == 1
    assert value("sluice_api_requests_total", api="graphql", operation="switch_test", role="r", status="200") == 2
