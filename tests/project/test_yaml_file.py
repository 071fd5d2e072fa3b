"""sluice.yaml read key by key: typed options at every level, ${VAR} everywhere, clashing destinations."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sluice.project.load import parse_project


def problems_in(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "sluice.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    _, found = parse_project(path)
    return [str(problem).removeprefix(str(path)) for problem in found]


def test_a_misspelled_option_at_each_level_is_refused_at_its_line(tmp_path: Path) -> None:
    found = problems_in(
        tmp_path,
        """
        name: shop
        retries: {attempts: 3}
        stages:
          ingest: {ids: 1000-1999, concurency: 2}
        connections:
          wh: duckdb:///wh.duckdb
        objects:
          - id: 1001
            name: users
            source:
              type: csv
              path: users.csv
              delimter: ";"
            destination: {connection: wh, table: users, mod: append}
          - id: 1002
            name: orders
            source:
              type: csv
              path: orders.csv
              options:
                headr: false
        """,
    )
    assert found == [
        ":2: top level: unknown key 'retries'. Did you mean 'retry'? "
        "Known keys: objects, name, bus, state, lake, lease_s, retry, stages, connections, syncs, api, engine, spark, "
        "models, dbt, objets, alerts, history, sensors, schedules, serve",
        ":4: stage 'ingest': unknown key 'concurency'. Did you mean 'concurrency'? Known keys: ids, concurrency, layer, delay_s",
        ":13: object 1001 (users): csv source: unknown option 'delimter'. Did you mean 'delimiter'? "
        "Known options: path, delimiter, header, quote_char, encoding, skip_rows, null_values, empty_as_null, "
        "newlines_in_values, column_names, column_types, "
        "block_size",
        ":14: object 1001 (users): destination: unknown option 'mod'. Did you mean 'mode'? "
        "Known options: connection, table, mode, key, schema_evolution",
        ":21: object 1002 (orders): csv source: unknown option 'headr'. Did you mean 'header'? "
        "Known options: path, delimiter, header, quote_char, encoding, skip_rows, null_values, empty_as_null, "
        "newlines_in_values, column_names, column_types, "
        "block_size",
    ]


def test_wrong_types_ranges_and_missing_options_each_have_a_line(tmp_path: Path) -> None:
    found = problems_in(
        tmp_path,
        """
        lease_s: 0
        retry: {attempts: 0}
        objects:
          - id: 1001
            source: {type: faker, schema: user, rows: -5}
          - id: 1002
            source: {type: parquet}
          - id: 2001
            parents: [1001]
            python: not a reference
        """,
    )
    assert found == [
        ":1: top level: lease_s: expected float >= 0.1, got 0",
        ":2: retry: attempts: expected int >= 1, got 0",
        ":5: object 1001: faker source: schema: invalid enum value 'user'. Did you mean 'users'? "
        "Choose one of: users, transactions, products",
        ":5: object 1001: faker source: rows: expected int >= 0, got -5",
        ":7: object 1002: parquet source: missing required option 'path'",
        ":10: object 2001: python must be 'module:function' (e.g. transforms:dim_users), got 'not a reference'",
    ]


def test_environment_variables_are_expanded_in_every_string(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_TEST_SCHEMA", "sales")
    monkeypatch.setenv("SLUICE_TEST_DIR", "data")
    path = tmp_path / "sluice.yaml"
    path.write_text(
        textwrap.dedent(
            """
            connections: {wh: "duckdb:///${SLUICE_TEST_DIR}/wh.duckdb"}
            objects:
              - id: 1001
                name: users
                source: {type: csv, path: "${SLUICE_TEST_DIR}/users.csv", delimiter: "${SLUICE_TEST_SEP:-;}"}
                destination: {connection: wh, table: "${SLUICE_TEST_SCHEMA}.users"}
              - id: 2001
                parents: [1001]
                sql: select * from users where country = '${SLUICE_TEST_COUNTRY:-FR}'
            """
        ),
        encoding="utf-8",
    )
    project, found = parse_project(path)
    assert found == [] and project is not None
    users = project.objects[1001]
    assert users.source is not None and users.source.get("path") == "data/users.csv" and users.source.get("delimiter") == ";"
    assert users.destination is not None and users.destination.table == "sales.users"
    assert project.connections["wh"].url == "duckdb:///data/wh.duckdb"
    assert project.objects[2001].sql == "select * from users where country = 'FR'"


def test_an_undefined_variable_without_default_is_a_validation_error(tmp_path: Path) -> None:
    found = problems_in(
        tmp_path,
        """
        connections: {wh: "duckdb:///wh.duckdb"}
        objects:
          - id: 1001
            source: {type: csv, path: a.csv}
            destination: {connection: wh, table: "${SLUICE_TEST_UNSET_SCHEMA}.t1"}
        """,
    )
    assert found == [
        ":5: 'objects[0].destination.table' uses ${SLUICE_TEST_UNSET_SCHEMA} but that environment variable is not set; "
        "set it or write ${SLUICE_TEST_UNSET_SCHEMA:-default}"
    ]


def test_a_key_given_twice_is_an_error(tmp_path: Path) -> None:
    found = problems_in(tmp_path, "objects:\n  - id: 1001\n    name: a\n    name: b\n")
    assert found == [":4: object 1001 (b): key 'name' is given twice; keep one"]


def test_bus_state_and_lake_options_are_checked_against_their_plugins(tmp_path: Path) -> None:
    found = problems_in(
        tmp_path,
        """
        bus: kafka://127.0.0.1:29092?partition=3
        state: postgress://u@h/db
        lake: {type: locl, path: lake}
        objects: [{id: 1001}]
        """,
    )
    assert found[0] == (
        ":1: bus 'kafka://127.0.0.1:29092?partition=3': unknown option 'partition'. Did you mean 'partitions'? "
        "Known options: partitions, retention_days, namespace"
    )
    assert found[1].startswith(":2: state store cannot use postgress:// URLs. Did you mean 'postgres'?")
    assert found[2] == ":3: lake: type: unknown lake 'locl'. Did you mean 'local'? Known: local, s3"


def test_a_lake_folder_as_a_string_or_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "sluice.yaml").write_text("lake: {type: local, path: out/lake}\nobjects: [{id: 1001}]\n", encoding="utf-8")
    project, found = parse_project(tmp_path)
    assert found == [] and project is not None and project.resolve_lake_path() == tmp_path.resolve() / "out" / "lake"
    (tmp_path / "sluice.yaml").write_text("lake: elsewhere\nobjects: [{id: 1001}]\n", encoding="utf-8")
    project, found = parse_project(tmp_path)
    assert found == [] and project is not None and project.resolve_lake_path() == tmp_path.resolve() / "elsewhere"


CLASHES = """
connections: {{wh: "duckdb:///wh.duckdb"}}
objects:
  - {{id: 1001, name: a, source: {{type: faker, schema: users}}, destination: {{connection: wh, table: t, {first}}}}}
  - {{id: 1002, name: b, source: {{type: faker, schema: users}}, destination: {{connection: wh, table: T, {second}}}}}
"""


@pytest.mark.parametrize(
    ("first", "second", "why"),
    [
        ("mode: replace", "mode: append", "mode replace would drop the other object's rows"),
        ("mode: append", "mode: replace", "mode replace would drop the other object's rows"),
        ("mode: merge, key: [id]", "mode: merge, key: [email]", "they merge on different keys (id vs email)"),
    ],
)
def test_two_objects_that_clobber_one_table_are_named(tmp_path: Path, first: str, second: str, why: str) -> None:
    found = problems_in(tmp_path, CLASHES.format(first=first, second=second))
    assert found == [
        f":4: object 1002 (b): writes table 'T' on connection 'wh' like object 1001 (a) (line 3), and {why}; "
        "give each its own table, or append/merge on the same key"
    ]


@pytest.mark.parametrize(
    ("first", "second"), [("mode: append", "mode: append"), ("mode: merge, key: [id]", "mode: merge, key: [id]")]
)
def test_appending_or_merging_on_one_key_into_one_table_is_fine(tmp_path: Path, first: str, second: str) -> None:
    assert problems_in(tmp_path, CLASHES.format(first=first, second=second)) == []


def test_schema_evolution_defaults_to_strict_and_takes_widen(tmp_path: Path) -> None:
    path = tmp_path / "sluice.yaml"
    path.write_text(
        textwrap.dedent(
            """
            connections: {wh: duckdb:///wh.duckdb}
            objects:
              - {id: 1001, name: a, source: {type: faker, schema: users}, destination: {connection: wh, table: a}}
              - id: 1002
                name: b
                source: {type: faker, schema: users}
                destination: {connection: wh, table: b, schema_evolution: widen}
            """
        ).lstrip("\n"),
        encoding="utf-8",
    )
    project, found = parse_project(path)
    assert found == []
    assert project is not None
    evolutions = [obj.destination.schema_evolution for obj in project.objects.values() if obj.destination is not None]
    assert evolutions == ["strict", "widen"]
    wrong = problems_in(
        tmp_path,
        """
        connections: {wh: duckdb:///wh.duckdb}
        objects:
          - id: 1001
            source: {type: faker, schema: users}
            destination: {connection: wh, table: a, schema_evolution: wident}
        """,
    )
    assert len(wrong) == 1
    assert wrong[0].startswith(":5: object 1001: destination: schema_evolution: invalid enum value 'wident'")


def test_a_two_way_syncs_unknown_connection_is_reported_once_and_a_bad_table_option_names_the_table(tmp_path: Path) -> None:
    problems = problems_in(
        tmp_path,
        """
        connections:
          hr: mysql://u:p@127.0.0.1:23306/hr
          warehouse: postgresql://u@127.0.0.1:25432/dw
        syncs:
          - {name: emps, source: hr, target: warehose, tables: [emp], direction: both, columns: {emp: {mask: note}}}
        objects: []
        """,
    )
    unknown = [p for p in problems if "unknown connection 'warehose' in target" in p]
    assert len(unknown) == 1, problems
    assert any("sync 'emps': columns[emp].mask: expected array, got str" in p for p in problems), problems
