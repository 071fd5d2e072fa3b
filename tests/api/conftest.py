"""Fixtures of the data-API tests: a fresh database of each engine holding the HR data set (api_support.DDL),
and a started :class:`~sluice.api.service.DataApi` over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import DDL, ENGINES, ROLES, Client, execute_all, make_api


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh database of each engine, holding the HR data set."""
    kind = request.param
    if kind == "postgresql":
        request.applymarker(pytest.mark.postgres)
        url = str(request.getfixturevalue("pg_db_url"))
    elif kind == "mysql":
        request.applymarker(pytest.mark.mysql)
        url = str(request.getfixturevalue("mysql_db_url"))
    else:
        url = f"sqlite:///{tmp_path / 'hr.db'}"
    execute_all(url, DDL)
    return url


@pytest.fixture
def client(engine: str) -> Iterator[Client]:
    api = make_api({"sources": [{"connection": "hr", "tables": ["*"]}], "roles": ROLES}, {"hr": engine})
    try:
        yield Client(api, engine)
    finally:
        api.close()
