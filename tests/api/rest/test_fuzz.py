"""A property-based fuzz of the REST API from its own OpenAPI document (schemathesis, from PyPI): every
operation of ``/rest/openapi.json`` gets generated requests (valid and invalid parameters, bodies and
headers); not one may answer 5xx. Kept short (a few examples per operation) so it runs in seconds."""

from __future__ import annotations

import warnings
from typing import Any

import httpx
import pytest

from rest.blog import Served

MAX_EXAMPLES = 8


@pytest.mark.parametrize("database", [pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
def test_no_5xx_from_generated_requests(database: str, request: pytest.FixtureRequest) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    served: Served = request.getfixturevalue({"postgres": "pg_served", "sqlite": "sqlite_served"}[database])
    document = httpx.get(served.url + "/rest/openapi.json").json()
    document["servers"] = [{"url": served.url + "/rest"}]
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 12  # four tables, writes on three, the /{id} routes
    failures: list[str] = []
    seen = 0
    base_url = served.url + "/rest"

    def fuzz(operation: Any) -> None:
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(data=st.data())
        def run(data: st.DataObject) -> None:
            nonlocal seen
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                case = data.draw(operation.as_strategy())
                answer = case.call(base_url=base_url, timeout=30)
            seen += 1
            if answer.status_code >= 500:
                failures.append(f"{case.method} {answer.request.url} -> {answer.status_code} {answer.text[:200]}")

        run()

    for operation in operations:
        fuzz(operation)
    assert seen >= len(operations)
    assert not failures, "\n".join(failures[:10])
