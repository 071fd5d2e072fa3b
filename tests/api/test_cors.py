"""``api: cors:`` on the served app: preflights and answers of GraphQL (its fast path), REST and proxies carry
the CORS headers for an allowed origin, 401 and 429 included; other origins and the control API get none."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_support import DDL, execute_all, served

from sluice.errors import ValidationFailed
from sluice.project.load import load_project
from sluice.server.app import create_app
from sluice.server.services import ServerSettings, Services

APP = "https://app.example.com"
PROJECT = """\
connections:
  hr: sqlite:///hr.db
api:
  sources:
    - {connection: hr, tables: [employes, dept]}
  auth: {anon_role: anon}
  roles:
    anon:
      employes: {select: {columns: [id, nom]}}
  limits:
    rate: {per_address: 4/minute}
  cors: {allow_origins: ["%s"]}
"""


def test_allowed_origin_gets_cors_headers_on_the_data_api_only(tmp_path: Path) -> None:
    execute_all(f"sqlite:///{tmp_path / 'hr.db'}", DDL)
    (tmp_path / "sluice.yaml").write_text(PROJECT % APP)
    project = load_project(str(tmp_path))
    with served(create_app(Services(project, ServerSettings(workers=False, resume=False)))) as client:
        preflight = client.options(
            "/graphql",
            headers={
                "origin": APP,
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type, authorization",
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == APP
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        assert preflight.headers["access-control-max-age"] == "600"

        query = {"query": "{ employes(order_by: {id: asc}, limit: 1) { nom } }"}
        answer = client.post("/graphql", json=query, headers={"origin": APP})
        assert answer.json() == {"data": {"employes": [{"nom": "Ana"}]}}
        assert answer.headers["access-control-allow-origin"] == APP
        assert "retry-after" in answer.headers["access-control-expose-headers"].lower()

        rest = client.get("/rest/employes?select=nom&id=eq.2", headers={"origin": APP})
        assert rest.json() == [{"nom": "Bob"}] and rest.headers["access-control-allow-origin"] == APP

        refused = client.post("/graphql", json={"query": "{ dept { id } }"}, headers={"origin": APP})
        assert refused.status_code == 403 and refused.headers["access-control-allow-origin"] == APP

        answers = [client.post("/graphql", json=query, headers={"origin": APP}) for _ in range(4)]  # 4/minute per address
        limited = answers[-1]
        assert limited.status_code == 429 and limited.headers["access-control-allow-origin"] == APP

        other = client.post("/graphql", json=query, headers={"origin": "https://evil.example.net"})
        assert "access-control-allow-origin" not in other.headers
        bad_preflight = client.options(
            "/graphql", headers={"origin": "https://evil.example.net", "access-control-request-method": "POST"}
        )
        assert bad_preflight.status_code == 400 and "access-control-allow-origin" not in bad_preflight.headers

        control = client.get("/health", headers={"origin": APP})
        assert control.status_code == 200 and "access-control-allow-origin" not in control.headers


def test_credentials_with_any_origin_and_overlapping_proxies_are_refused_with_their_lines(tmp_path: Path) -> None:
    (tmp_path / "sluice.yaml").write_text(
        PROJECT.replace('cors: {allow_origins: ["%s"]}', "cors: {allow_origins: ['*'], allow_credentials: true}")
        + "  proxies:\n    - {path: /rest/legacy, upstream: 'http://127.0.0.1:9'}\n    - {path: /runs, upstream: 'http://127.0.0.1:9'}\n"
    )
    with pytest.raises(ValidationFailed) as raised:
        load_project(str(tmp_path))
    text = str(raised.value)
    assert "sluice.yaml:12: api: cors: allow_credentials cannot go with allow_origins '*'" in text
    assert "sluice.yaml:14: api: proxies[0]: path '/rest/legacy' overlaps rest_path" in text
    assert "sluice.yaml:15: api: proxies[1]: path '/runs' overlaps a route of the control API" in text


def test_malformed_origins_are_each_refused_saying_what_an_origin_is(tmp_path: Path) -> None:
    (tmp_path / "sluice.yaml").write_text(PROJECT % 'app.example.com", "https://ok.example.com", "https://x.io/path')
    with pytest.raises(ValidationFailed) as raised:
        load_project(str(tmp_path))
    text = str(raised.value)
    assert "sluice.yaml:12: api: cors: allow_origins[0] 'app.example.com' is not an origin: write scheme://host[:port]" in text
    assert "allow_origins[2] 'https://x.io/path' is not an origin" in text and "allow_origins[1]" not in text


def test_a_wildcard_origin_allows_subdomains_only(tmp_path: Path) -> None:
    execute_all(f"sqlite:///{tmp_path / 'hr.db'}", DDL)
    (tmp_path / "sluice.yaml").write_text(PROJECT % "https://*.example.com")
    project = load_project(str(tmp_path))
    with served(create_app(Services(project, ServerSettings(workers=False, resume=False)))) as client:
        for origin, allowed in [
            ("https://app.example.com", True),
            ("https://a.b.example.com", True),
            ("https://example.com", False),
            ("http://app.example.com", False),
            ("https://app.example.com.evil.net", False),
            ("https://appexample.com", False),
        ]:
            preflight = client.options("/graphql", headers={"origin": origin, "access-control-request-method": "POST"})
            assert (preflight.status_code == 200) is allowed, origin
            assert (preflight.headers.get("access-control-allow-origin") == origin) is allowed, origin
