"""sluice validate finds what would otherwise fail only at run time: SQL tables, missing files, YAML syntax."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.errors import ConfigError
from sluice.project.checks import python_problem, sql_columns, sql_tables
from sluice.project.load import load_project, parse_project

HEAD = "objects:\n  - {id: 1001, name: users, source: {type: csv, path: users.csv}}\n"


def write_project(tmp_path: Path, objects: str, *, data: bool = True) -> Path:
    if data:
        (tmp_path / "users.csv").write_text("id,email\n1,a@b.c\n", encoding="utf-8")
    path = tmp_path / "sluice.yaml"
    path.write_text(HEAD + objects, encoding="utf-8")
    return path


def problems(path: Path, *, ahead: bool = True) -> list[str]:
    return [str(problem) for problem in parse_project(path, ahead=ahead)[1]]


def test_sql_tables_leave_out_ctes_table_functions_and_qualified_names() -> None:
    sql = (
        "with recent as (select * from users) select * from recent r join orders o using (id) "
        "join read_parquet('x.parquet') p on true, range(3) t where id in (select id from Items) and x in (select 1 from s.other)"
    )
    assert sorted(sql_tables(sql)) == ["Items", "orders", "users"]


def test_sql_reading_a_table_that_is_not_a_parent_is_reported_at_the_sql_line(tmp_path: Path) -> None:
    path = write_project(tmp_path, "  - id: 2001\n    parents: [1001]\n    sql: select * from usres join users using (id)\n")
    found = problems(path)
    assert found == [
        f"{path}:5: object 2001: the SQL reads 'usres', which is not one of its parents. Did you mean 'users'? "
        "It can read its parents, by name: users"
    ]


def test_sql_with_ctes_and_parents_in_any_case_is_fine(tmp_path: Path) -> None:
    sql = "with u as (select * from USERS) select * from u"
    path = write_project(tmp_path, f"  - {{id: 2001, parents: [1001], sql: '{sql}'}}\n")
    assert problems(path) == []


def test_sql_syntax_error_is_one_line_with_the_sql_line_and_column(tmp_path: Path) -> None:
    path = write_project(tmp_path, "  - id: 2001\n    parents: [1001]\n    sql: |\n      select *\n      from (select 1\n")
    found = problems(path)
    assert len(found) == 1
    assert found[0].startswith(f"{path}:5: object 2001: SQL syntax error at line 2, column ")
    assert "Expecting )" in found[0]
    assert "\n" not in found[0]


def test_sql_problems_are_reported_by_validate_and_left_to_duckdb_at_run_time(tmp_path: Path) -> None:
    path = write_project(tmp_path, "  - {id: 2001, parents: [1001], sql: select * from nothing_here}\n")
    assert any("reads 'nothing_here'" in problem for problem in problems(path))
    assert problems(path, ahead=False) == []
    assert load_project(path).objects[2001].sql == "select * from nothing_here"


def test_missing_source_file_is_reported_by_validate_but_does_not_stop_a_run(tmp_path: Path) -> None:
    path = write_project(tmp_path, "", data=False)
    found = problems(path)
    assert found == [
        f"{path}:2: object 1001 (users): csv source path 'users.csv' does not exist "
        f"(looked for {tmp_path.resolve() / 'users.csv'}); relative paths start at the project folder"
    ]
    assert problems(path, ahead=False) == []
    assert load_project(path).objects[1001].source is not None  # the run fails the object: a TerminalError


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("name: x\nobjects:\n\t- {id: 1001}\n", ":3:1:", "a tab character cannot indent"),
        ("name: x\nobjects\nretry: {attempts: 2}\n", ":2:1:", "this mapping key has no ':'"),
        ('name: "shop\nobjects: []\n', ":1:7:", "unclosed quote"),
        ("objects:\n  - id: 1001\n    parents: [1000\n  - id: 2\n", ":3:14:", "unclosed '['"),
        ("name: a: b\n", ":1:8:", "a second ':' on this line"),
    ],
)
def test_yaml_syntax_errors_in_plain_words_with_line_and_column(tmp_path: Path, text: str, where: str, words: str) -> None:
    path = tmp_path / "sluice.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        parse_project(path)
    message = str(caught.value)
    assert message.startswith(f"{path}{where} malformed YAML: {words}")
    assert "\n" not in message
    assert "while scanning" not in message and "while parsing" not in message


def test_python_references_are_checked_without_running_the_code(tmp_path: Path) -> None:
    (tmp_path / "transforms.py").write_text(
        "import json\nfrom os import path as p\nLIMIT = 3\ndef double(users):\n    return users\n"
    )
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("raise RuntimeError('never imported by validate')\ndef f(x):\n    return x\n")
    assert python_problem("transforms:double", tmp_path) is None
    assert python_problem("transforms:json", tmp_path) is None  # an imported name counts
    assert python_problem("pkg:f", tmp_path) is None
    assert python_problem("json:dumps", tmp_path) is None  # installed modules are left to the run
    assert python_problem("transforms:dubble", tmp_path) == (
        f"module 'transforms' ({tmp_path / 'transforms.py'}) defines no 'dubble'. Did you mean 'double'?"
    )
    assert python_problem("transfroms:double", tmp_path) == (
        "no module 'transfroms' in the project folder or installed. Did you mean 'transforms'?"
    )
    assert (
        python_problem("pkg.sub:f", tmp_path)
        == f"module 'pkg.sub' is not in the project folder ({tmp_path / 'pkg' / 'sub'}.py); check the name"
    )


def test_sql_columns_are_known_only_when_every_column_is_named() -> None:
    assert sql_columns("select id, order_date as day, count(*) as n from orders group by 1, 2") == ["id", "day", "n"]
    assert sql_columns("with a as (select 1 as x) select x from a union all select y from b") == ["x"]
    assert sql_columns("select * from orders") is None
    assert sql_columns("select o.*, 1 as one from orders as o") is None
    assert sql_columns("select id + 1 from orders") is None
    assert sql_columns("select id from a; select id from b") is None
    assert sql_columns("select from where") is None
