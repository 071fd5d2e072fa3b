"""The ``check`` seam's contract, over every built-in check type: typed options with a default name, a target that
loads, and failing-rows SQL that compiles for each place (DuckDB, PostgreSQL, Spark) and runs on DuckDB."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest

from sluice.checks.builtin import Counted
from sluice.checks.compile import batch_query, check_query, read_result
from sluice.checks.settings import CheckOptions
from sluice.plugins.registry import registry

EXAMPLES: dict[str, dict[str, Any]] = {
    "not_null": {"columns": ["id"]},
    "unique": {"columns": ["id", "kind"]},
    "accepted_values": {"column": "kind", "values": ["a", "b"]},
    "relationships": {"column": "id", "to": "other", "field": "id"},
    "row_count": {"min": 1, "max": 2},
    "freshness": {"column": "ts", "max_age": "1h"},
    "expression": {"expression": "id > 1"},
    "sql": {"sql": "select * from {{ this }} where id = 3"},
    "python": {"function": "quality:check"},
}
FAILING = {"not_null": 1, "unique": 2, "accepted_values": 1, "relationships": 2, "row_count": 1, "freshness": 1}
FAILING |= {"expression": 2, "sql": 2, "python": 2}


class Context:
    """A DuckDB place over a small table, as :class:`~sluice.checks.places.Place` gives checks."""

    def __init__(self, root: Path) -> None:
        self.connection = duckdb.connect(":memory:")
        self.connection.execute(
            "create table sluice_this as select * from (values (1, 'a', timestamp '2020-01-01'), (1, 'a', null), "
            "(null, 'c', null), (3, 'b', null), (3, 'b', null)) as t(id, kind, ts)"
        )
        self.connection.execute("create table other as select 1 as id")
        self.this, self.keys, self.place, self.root = "sluice_this", (), "duckdb", root
        self.now = datetime(2026, 11, 30, tzinfo=UTC)

    def ref(self, target: int | str) -> str:
        assert target == "other"
        return "other"


@pytest.fixture
def context(tmp_path: Path) -> Context:
    (tmp_path / "quality.py").write_text("def check(context):\n    return 'select id from {{ this }} where id = 3'\n")
    return Context(tmp_path)


def test_every_builtin_check_type_has_an_example_here() -> None:
    assert sorted(registry().names("check")) == sorted(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_a_check_type_keeps_the_contract(name: str, context: Context) -> None:
    plugin = registry().get("check", name)
    assert plugin.kind == "check" and issubclass(plugin.options, CheckOptions) and plugin.summary
    options = msgspec.convert(EXAMPLES[name], plugin.options)
    assert isinstance(options, CheckOptions) and options.kind == name and options.default_name().startswith(name)
    implementation = plugin.load()
    failing = implementation(options, context)
    if isinstance(failing, Counted):  # counted by the check itself: nothing to compile
        assert failing.failing_rows == FAILING[name]
        return
    assert isinstance(failing, str)
    for place in ("duckdb", "postgres", "spark"):
        assert "sluice_failing_rows" in check_query(failing, 5, place)
    result = context.connection.execute(check_query(failing, 5, "duckdb"))
    columns = [d[0] for d in result.description]
    count, sample = read_result(columns, result.fetchall(), 5)
    assert count == FAILING[name], (name, failing)
    assert 1 <= len(sample) <= min(count, 5)
    aggregate = getattr(implementation, "aggregate", None)
    if aggregate is not None:  # it can share a scan: the same count from one aggregate
        expression = aggregate(options, context)
        for place in ("duckdb", "postgres", "spark"):
            assert "AS c1" in batch_query([expression, "COUNT(*)"], "sluice_this", place)
        batched = context.connection.execute(batch_query([expression, "COUNT(*)"], "sluice_this", "duckdb")).fetchone()
        assert batched == (FAILING[name], 5), name
