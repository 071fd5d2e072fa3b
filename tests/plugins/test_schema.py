"""The JSON Schema of sluice.yaml: shipped up to date, accepts the demo, rejects a misspelled key."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from sluice.plugins.registry import builtin_plugins
from sluice.plugins.schema import REGENERATE, SHIPPED, builtin_schema_text, project_schema

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "demo" / "sluice.yaml"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = project_schema(builtin_plugins())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(validator: jsonschema.Draft202012Validator, document: Any) -> list[str]:
    return [f"{error.json_path}: {error.message}" for error in validator.iter_errors(document)]


def test_shipped_schema_is_up_to_date() -> None:
    assert SHIPPED.read_text(encoding="utf-8") == builtin_schema_text(), (
        f"{SHIPPED.relative_to(REPO)} is out of date with the option structures; regenerate it with: {REGENERATE}"
    )


def test_sluice_schema_prints_the_shipped_schema_when_no_plugin_is_installed() -> None:
    result = subprocess.run([sys.executable, "-m", "sluice", "schema"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(SHIPPED.read_text(encoding="utf-8"))
    assert json.loads(result.stdout)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_accepts_the_demo(validator: jsonschema.Draft202012Validator) -> None:
    assert errors(validator, yaml.safe_load(DEMO.read_text(encoding="utf-8"))) == []


def test_schema_accepts_every_kind_of_source_lake_and_destination(validator: jsonschema.Draft202012Validator) -> None:
    document = {
        "name": "all",
        "lake": {"type": "local", "path": "lake"},
        "bus": "kafka://127.0.0.1:9092?partitions=3",
        "retry": {"attempts": 2},
        "stages": {"ingest": {"ids": "1000-1999", "concurrency": 2}},
        "connections": {"shop": "mysql://me@h/shop", "dw": {"url": "duckdb:///dw.duckdb"}},
        "objects": [
            {"id": 1001, "source": {"type": "csv", "path": "a.csv", "delimiter": ";"}},
            {"id": 1002, "source": {"type": "faker", "schema": "users", "rows": 5}},
            {"id": 1003, "source": {"type": "sql", "connection": "shop", "query": "select 1"}},
            {"id": 2001, "parents": [1001], "python": "t:f", "destination": {"connection": "dw", "table": "t", "key": "id"}},
        ],
    }
    assert errors(validator, document) == []
    assert errors(validator, {**document, "lake": "lake"}) == []


@pytest.mark.parametrize(
    ("path", "key", "value"),
    [
        ((), "conections", {}),
        (("objects", 0), "parent", [1]),
        (("objects", 0, "source"), "pth", "x.csv"),
        (("objects", 20, "destination"), "tabel", "x"),
        ((), "stages", {"ingest": {"concurency": 2}}),
    ],
)
def test_schema_rejects_a_misspelled_key(
    validator: jsonschema.Draft202012Validator, path: tuple[str | int, ...], key: str, value: Any
) -> None:
    document = copy.deepcopy(yaml.safe_load(DEMO.read_text(encoding="utf-8")))
    target = document
    for step in path:
        target = target[step]
    target[key] = value
    found = errors(validator, document)
    assert found, f"{key!r} at {path} was accepted"


def test_schema_rejects_wrong_values(validator: jsonschema.Draft202012Validator) -> None:
    base = {"objects": [{"id": 1001, "source": {"type": "faker", "schema": "users"}}]}
    assert errors(validator, base) == []
    for source in (
        {"type": "faker", "schema": "planets"},
        {"type": "faker", "schema": "users", "rows": -1},
        {"type": "csv"},
        {"type": "nosuch", "path": "x"},
    ):
        assert errors(validator, {"objects": [{"id": 1001, "source": source}]}), source
    assert errors(validator, {"lease_s": 0})
    assert errors(validator, {"lake": {"type": "local", "pth": "x"}})


def test_sql_sources_share_one_definition() -> None:
    schema = project_schema(builtin_plugins())
    choices = schema["$defs"]["ObjectSettings"]["properties"]["source"]["anyOf"]
    types = [schema["$defs"][c["$ref"].rsplit("/", 1)[1]]["properties"]["type"]["const"] for c in choices if "$ref" in c]
    assert types == ["csv", "json", "jsonl", "parquet", "faker", "rest", "kafka", "sql"]
