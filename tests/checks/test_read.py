"""``checks:`` in sluice.yaml: every mistake found before anything runs, each at its file and line."""

from __future__ import annotations

from pathlib import Path

from helpers import write_yaml
from sluice.checks.settings import ExpressionOptions, NotNullOptions, RowCountOptions
from sluice.project.load import parse_project


def problems(tmp_path: Path, checks: str, extra: str = "") -> list[str]:
    folder = tmp_path / "p"
    write_yaml(
        folder,
        f"""objects:
  - {{id: 1001, name: users, source: {{type: faker, schema: users, rows: 5, seed: 1}}}}
  - id: 2001
    name: clean
    parents: [1001]
    sql: select * from users
    checks:
{checks}
{extra}""",
    )
    _, found = parse_project(folder)
    return [str(problem).replace(str(folder / "sluice.yaml"), "sluice.yaml") for problem in found]


def test_declarations_become_typed_checks_with_defaults(tmp_path: Path) -> None:
    folder = tmp_path / "ok"
    write_yaml(
        folder,
        """objects:
  - id: 1001
    name: users
    source: {type: faker, schema: users, rows: 5, seed: 1}
    checks:
      - not_null: {columns: [user_id, email]}
      - expression: "user_id > 0"
        severity: warn
        sample: 0
      - row_count: {min: 1}
        name: some_rows
""",
    )
    project, found = parse_project(folder)
    assert found == [] and project is not None
    first, second, third = project.objects[1001].checks
    assert (first.name, first.kind, first.severity, first.sample, first.line) == (
        "not_null_user_id_email",
        "not_null",
        "error",
        5,
        6,
    )
    assert isinstance(first.options, NotNullOptions) and first.options.columns == ["user_id", "email"]
    assert (second.name, second.severity, second.sample) == ("expression_user_id_0", "warn", 0)
    assert isinstance(second.options, ExpressionOptions)
    assert third.name == "some_rows" and isinstance(third.options, RowCountOptions) and third.options.min == 1


def test_every_mistake_is_reported_at_its_line(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """      - not_nul: {columns: [a]}
      - unique: {colums: [a]}
      - row_count: {min: 5, max: 2}
      - expression: "amount >>= 0"
      - accepted_values: {column: status, values: [a]}
        severity: fatal
      - relationships: {column: user_id, to: nosuch}
      - relationships: {column: user_id, to: other}
      - not_null: {columns: [user_id]}
      - not_null: {columns: [user_id]}
      - sql: "select 1; select 2"
      - {}
""",
        "  - {id: 2002, name: other, parents: [1001], sql: select * from users}\n",
    )
    expected = [
        "sluice.yaml:8: object 2001 (clean): unknown check type 'not_nul'. Did you mean 'not_null'?",
        "sluice.yaml:9: object 2001 (clean): check unique: unknown option 'colums'. Did you mean 'columns'?",
        "sluice.yaml:9: object 2001 (clean): check unique: missing required option 'columns'",
        "sluice.yaml:10: object 2001 (clean): check row_count",
        "sluice.yaml:11: object 2001 (clean): check expression: SQL syntax error at line 1, column 10",
        "sluice.yaml:13: object 2001 (clean): a check's severity is error or warn, got 'fatal'",
        "sluice.yaml:14: object 2001 (clean): check relationships_user_id: relationships to 'nosuch': no such object.",
        "sluice.yaml:15: object 2001 (clean): two checks are named 'relationships_user_id'",
        "sluice.yaml:17: object 2001 (clean): two checks are named 'not_null_user_id'",
        "sluice.yaml:18: object 2001 (clean): check sql: a check's SQL must be one query",
        "sluice.yaml:19: object 2001 (clean): a check names one type",
    ]
    for start in expected:
        assert any(problem.startswith(start) for problem in found), (start, found)
    assert len(found) == len(expected), found


def test_a_relationship_needs_an_ancestor_and_in_postgresql_a_table_there(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "      - relationships: {column: user_id, to: other}",
        "  - {id: 2002, name: other, parents: [1001], sql: select 1 as x}\n",
    )
    assert len(found) == 1 and "it is not an ancestor" in found[0] and "add 2002 to parents" in found[0]
    folder = tmp_path / "pg"
    write_yaml(
        folder,
        """connections: {warehouse: "postgresql://u@127.0.0.1:1/dw"}
objects:
  - {id: 1001, name: users, source: {type: faker, schema: users, rows: 5, seed: 1}}
  - id: 2001
    name: clean
    parents: [1001]
    sql: select * from users
    destination: {connection: warehouse, table: clean}
    checks:
      - relationships: {column: user_id, to: users}
  - id: 2002
    name: nowhere
    parents: [1001]
    sql: select * from users
    lake: false
    checks:
      - row_count: {min: 1}
""",
    )
    _, found_pg = parse_project(folder)
    texts = [str(p) for p in found_pg]
    assert any(":10: object 2001 (clean): check relationships_user_id: " in t and "has no table" in t for t in texts), texts
    assert any(
        ":17: object 2002 (nowhere): its checks cannot run: its output is neither in PostgreSQL nor in the lake" in t
        for t in texts
    )


def test_a_column_the_object_s_sql_does_not_return_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "cols"
    write_yaml(
        folder,
        """objects:
  - {id: 1001, name: users, source: {type: faker, schema: users, rows: 5, seed: 1}}
  - id: 2001
    name: clean
    parents: [1001]
    sql: select user_id, email as mail from users
    checks:
      - not_null: {columns: [user_id, emial]}
      - accepted_values: {column: MAIL, values: [a]}
""",
    )
    _, found = parse_project(folder)
    assert [str(p).split("sluice.yaml:")[1] for p in found] == [
        "8: object 2001 (clean): check not_null_user_id_emial: column 'emial' is not among the columns its output has "
        "(user_id, mail). Did you mean 'mail'? Name one of them in the check, or select it in the object's SQL"
    ]


def test_a_template_error_in_a_sql_check_is_shown_at_its_line_not_as_a_sqlglot_token(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        '      - sql: "select * from {{ thiss }} where x"\n'
        '      - sql: "select * from {{ this } where x"\n'
        "      - sql: \"select * from {{ this }} where day = '{{ ds }}'\"",
    )
    assert len(found) == 3, found
    assert found[0].startswith("sluice.yaml:8: object 2001 (clean): check sql: template error: 'thiss' is undefined;")
    assert found[1].startswith("sluice.yaml:9: object 2001 (clean): check sql: bad template")
    assert "'ds' is undefined; a check's SQL takes only {{ this }}" in found[2]
    assert not any("Token" in problem for problem in found)


def test_rows_defaults_by_type_explicit_rows_wins_and_anything_else_is_refused_at_its_line(tmp_path: Path) -> None:
    folder = tmp_path / "rows"
    write_yaml(
        folder,
        """objects:
  - id: 1001
    name: users
    source: {type: faker, schema: users, rows: 5, seed: 1}
    checks:
      - not_null: {columns: [user_id]}
      - unique: {columns: [user_id]}
        rows: table
      - freshness: {column: signup_date, max_age: 1d}
      - row_count: {min: 1}
      - row_count: {max: 10}
        name: per_load
        rows: load
""",
    )
    project, found = parse_project(folder)
    assert found == [] and project is not None
    assert [check.rows for check in project.objects[1001].checks] == ["load", "table", "table", "table", "load"]
    assert project.objects[1001].checks[1].definition()["rows"] == "table"
    assert project.objects[1001].checks[2].definition()["rows"] == "table"
    found_problems = problems(
        tmp_path,
        "      - not_null: {columns: [user_id]}\n        rows: lod\n      - unique: {columns: [user_id]}\n        rows: 3",
    )
    assert found_problems == [
        "sluice.yaml:9: object 2001 (clean): a check's rows is load (the rows of this load) or table (the whole output), "
        "got 'lod'. Did you mean 'load'?",
        "sluice.yaml:11: object 2001 (clean): a check's rows is load (the rows of this load) or table (the whole output), got 3.",
    ]
