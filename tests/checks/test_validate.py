"""What ``sluice validate`` finds in checks from the rest of the project: columns an object's output does not have
(its SQL's, a parent's through ``select *``, a Faker schema's), a ``relationships`` field missing from the referenced
object, a ``python`` check whose module or function does not exist."""

from __future__ import annotations

from pathlib import Path

from helpers import write_yaml
from sluice.checks.validate import expression_columns
from sluice.project.load import parse_project

OBJECTS = """objects:
  - {id: 1001, name: users, source: {type: faker, schema: users, rows: 5, seed: 1}}
  - {id: 1002, name: landing, source: {type: csv, path: landing.csv}}
  - id: 2001
    name: clean
    parents: [1001, 1002]
    sql: select *, upper(email) as mail from users where is_active
    checks:
"""


def problems(tmp_path: Path, checks: str) -> list[str]:
    folder = tmp_path / "p"
    write_yaml(folder, OBJECTS + checks)
    (folder / "checks.py").write_text("def no_gaps(context):\n    return 0\n", encoding="utf-8")
    _, found = parse_project(folder)
    return [str(problem).split("sluice.yaml:")[1] for problem in found]


def test_a_relationships_field_the_referenced_object_does_not_have_is_refused(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "      - relationships: {column: user_id, to: users, field: usr_id}\n"
        "      - relationships: {column: mail, to: users}\n"
        "      - relationships: {column: user_id, to: users, field: USER_ID}\n",
    )
    assert found == [
        "9: object 2001 (clean): check relationships_user_id: relationships to object 1001 (users): its field 'usr_id' "
        "is not among the columns it returns (user_id, first_name, last_name, email, country, city, signup_date, "
        "birth_date, is_active). Did you mean 'user_id'? Give its column as field",
        "10: object 2001 (clean): check relationships_mail: relationships to object 1001 (users): its column (the default "
        "field) 'mail' is not among the columns it returns (user_id, first_name, last_name, email, country, city, "
        "signup_date, birth_date, is_active). Did you mean 'email'? Give its column as field",
        "11: object 2001 (clean): two checks are named 'relationships_user_id' (also at line 9); give one a name: key",
    ]


def test_an_expression_naming_a_column_the_output_lacks_is_refused(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        '      - expression: "length(mail) > 3 and signup_dat <= current_date"\n'
        "      - expression: \"list_all([1], x -> x > 0) and user_id > 0 and email like '%@%'\"\n",
    )
    assert found == [
        "9: object 2001 (clean): check expression_length_mail_3_and_signup_dat_current_dat: column 'signup_dat' is not "
        "among the columns its output has (user_id, first_name, last_name, email, country, city, signup_date, "
        "birth_date, is_active, mail). Did you mean 'signup_date'? Name one of them in the check, or select it in the "
        "object's SQL"
    ]


def test_columns_are_not_guessed_where_the_definition_does_not_tell_them(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    write_yaml(
        folder,
        """objects:
  - {id: 1002, name: landing, source: {type: csv, path: landing.csv}}
  - {id: 2001, name: a, parents: [1002], sql: select * from landing, checks: [{expression: "anything > 0"}]}
  - {id: 2002, name: b, parents: [1002], sql: select count(*) from landing, checks: [{not_null: {columns: [x]}}]}
""",
    )
    _, found = parse_project(folder)
    assert found == []


def test_a_python_check_whose_module_or_function_does_not_exist_is_refused_at_its_line(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "      - python: checks:no_gaps\n      - {python: chekcs:no_gaps, name: typo}\n      - python: checks:no_gap\n",
    )
    hint = "A python check is module:function, the module a .py file of the project folder or an installed package"
    assert found == [
        f"10: object 2001 (clean): check typo: python 'chekcs:no_gaps': no module 'chekcs' in the project "
        f"folder or installed. Did you mean 'checks'? {hint}",
        f"11: object 2001 (clean): check python_no_gap: python 'checks:no_gap': module 'checks' ({tmp_path}/p/checks.py) "
        f"defines no 'no_gap'. Did you mean 'no_gaps'? {hint}",
    ]


def test_expression_columns_are_the_unqualified_ones_outside_lambdas() -> None:
    assert expression_columns("a > 0 and t.b is null and list_all(c, x -> x > d)") == ["a", "c", "d"]


def test_an_append_outside_postgresql_with_error_checks_is_refused(tmp_path: Path) -> None:
    """Only PostgreSQL runs the checks inside the load: elsewhere an append commits before them."""
    text = """connections:
  dw: sqlite:///dw.db
objects:
  - id: 1001
    name: orders
    source: {type: faker, schema: users, rows: 5, seed: 1}
    destination: {connection: dw, table: orders, mode: %s}
    checks:
      - unique: {columns: [user_id]}
        severity: %s
"""
    found = {}
    for mode, severity in (("append", "error"), ("append", "warn"), ("merge", "error")):
        folder = tmp_path / f"{mode}-{severity}"
        write_yaml(folder, text % (mode if mode == "append" else "merge, key: [user_id]", severity))
        found[(mode, severity)] = [str(p).split("sluice.yaml:")[1] for p in parse_project(folder)[1]]
    assert found[("append", "error")] == [
        "9: object 1001 (orders): destination table 'orders' (mode append, connection 'dw') commits its rows before the "
        "checks run (only PostgreSQL runs them inside the load), so a failed error check would leave them there and a run "
        "made again would append them twice; give the destination mode merge (with a key) or replace, or the checks "
        "severity: warn"
    ]
    assert found[("append", "warn")] == found[("merge", "error")] == []
