"""An object's source in sluice.yaml (:mod:`sluice.project.yaml_sources`): a nested ``options:`` merged in with its
lines, and the kind inferred from the options when ``type`` is not given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_yaml_file import problems_in

from sluice.connectors.plugins import SQL_KIND
from sluice.project.yaml_sources import flatten_options, infer_source_kind
from sluice.project.yaml_tree import YamlMap


def mapping(values: dict[str, Any], line: int = 1, key_lines: dict[str, int] | None = None) -> YamlMap:
    """A :class:`YamlMap` as the YAML reader makes them (every key on the mapping's line unless told)."""
    made = YamlMap(values)
    made.line, made.key_lines, made.duplicates = line, key_lines or dict.fromkeys(values, line), []
    return made


def test_nested_options_are_merged_with_their_own_lines_and_a_key_given_twice_is_kept_as_a_duplicate() -> None:
    nested = mapping({"path": "b.csv", "delimiter": ";"}, 3, {"path": 4, "delimiter": 5})
    source = mapping({"type": "csv", "path": "a.csv", "options": nested}, 1, {"type": 1, "path": 2, "options": 3})
    flat = flatten_options(source)
    assert dict(flat) == {"type": "csv", "path": "b.csv", "delimiter": ";"}
    assert flat.line_of("delimiter") == 5
    assert ("path", 4) in flat.duplicates


def test_the_kind_is_inferred_from_faker_a_connection_or_the_path_suffix() -> None:
    faker = mapping({"faker": "users"}, 7)
    assert infer_source_kind(faker) == "faker"
    assert dict(faker) == {"schema": "users"} and faker.line_of("schema") == 7
    assert infer_source_kind(mapping({"connection": "crm", "table": "t"})) == SQL_KIND
    assert infer_source_kind(mapping({"path": "data/x.NDJSON"})) == "jsonl"
    assert infer_source_kind(mapping({"path": "data/x.pq"})) == "parquet"
    assert infer_source_kind(mapping({"rows": 3})) is None


def test_a_source_whose_kind_cannot_be_told_is_a_problem_at_its_line(tmp_path: Path) -> None:
    found = problems_in(tmp_path, "objects:\n  - id: 1001\n    name: a\n    source: {rows: 3}\n")
    assert found and found[0].startswith(":4:"), found
