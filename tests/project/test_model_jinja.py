"""Model files rendered with Jinja2: var() from sluice.yaml, env_var(), {% set %}, lines kept through branches
and multi-line tags, macros and unknown names refused at their line."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.errors import ConfigError
from sluice.project.load import load_project, parse_project
from sluice.project.model_jinja import render
from sluice.project.model_sql import parse_model_text

HEAD = "objects:\n  - {id: 1001, name: orders, source: {type: csv, path: orders.csv}}\n"


def write(tmp_path: Path, text: str, extra: str = "") -> Path:
    (tmp_path / "sluice.yaml").write_text(HEAD + extra, encoding="utf-8")
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / "m.sql").write_text(text, encoding="utf-8")
    return tmp_path


def test_var_reads_models_vars_of_sluice_yaml_with_defaults(tmp_path: Path) -> None:
    text = "select * from {{ ref('orders') }}\nwhere amount > {{ var('floor') }} and region = '{{ var('region', 'eu') }}'\n"
    path = write(tmp_path, text, "models:\n  vars: {floor: 10}\n")
    model = next(o for o in load_project(path).objects.values() if o.name == "m").model
    assert model is not None and "where amount > 10 and region = 'eu'" in model.full_sql


def test_an_unset_var_is_refused_at_its_line_with_did_you_mean(tmp_path: Path) -> None:
    path = write(tmp_path, "select *\nfrom orders where x > {{ var('flor') }}\n", "models:\n  vars: {floor: 10}\n")
    _, found = parse_project(path, ahead=True)
    assert any(
        f"{tmp_path / 'models' / 'm.sql'}:2: model m: var('flor') is not set" in str(p) and "Did you mean 'floor'?" in str(p)
        for p in found
    ), found


def test_env_var_reads_the_environment_or_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_TEST_SCHEMA", "crm")
    full, _, _, _ = render("select * from {{ env_var('SLUICE_TEST_SCHEMA') }}.t, {{ env_var('SLUICE_NOPE', 'x') }}", "m.sql")
    assert full == "select * from crm.t, x"
    monkeypatch.delenv("SLUICE_NOPE", raising=False)
    with pytest.raises(ConfigError) as caught:
        render("select 1\n-- {{ env_var('SLUICE_NOPE') }}\n", "m.sql")
    assert caught.value.line == 2 and "the environment has no SLUICE_NOPE" in str(caught.value)


def test_set_without_macros_and_lines_kept_through_branches_and_multiline_tags() -> None:
    text = (
        "{{ config(\n    materialized='incremental',\n    unique_key='id'\n) }}\n"  # lines 1-4
        "{% set cols = ['id', 'name'] %}\n"  # 5
        "select {{ cols | join(', ') }}\n"  # 6
        "from {{ ref('users') }}\n"  # 7
        "{% if is_incremental() %}\n"  # 8
        "where id > (select max(id) from {{ this }})\n"  # 9
        "{% endif %}\n"  # 10
        "  and\n  bogus(\n"  # 11-12
    )
    full, incremental, config, line = render(text, "m.sql")
    assert config == {"materialized": "incremental", "unique_key": "id"} and line == 1
    assert full.count("\n") == text.count("\n") and incremental is not None and incremental.count("\n") == text.count("\n")
    assert full.splitlines()[5] == "select id, name" and full.splitlines()[6] == "from users" and "where" not in full
    assert incremental.splitlines()[8].startswith("where id >") and full.splitlines()[11] == "  bogus("
    parsed = parse_model_text("{# a\ncomment #}\nselect *\nfrom {{ ref('users') }}", "m.sql")
    assert [(t.text, t.line) for t in parsed.tables] == [("users", 4)]


def test_macros_and_unknown_names_are_refused_at_their_line() -> None:
    with pytest.raises(ConfigError) as caught:
        render("select 1\n\n{% macro m() %}x{% endmacro %}\n", "m.sql")
    assert caught.value.line == 3 and "unsupported template tag '{% macro %}'" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        render("select 1\nfrom {{ target.schema }}.t\n", "m.sql")
    assert caught.value.line == 2 and "'target' is undefined" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        render("select 1\n\nfrom {{ ref(1, 2, 3) }}\n", "m.sql")
    assert caught.value.line == 3 and "ref() takes a model name" in str(caught.value)


def test_a_model_file_cannot_use_the_dbt_engine(tmp_path: Path) -> None:
    path = write(tmp_path, "{{ config(engine='dbt') }}\nselect * from orders\n")
    _, found = parse_project(path, ahead=True)
    assert any("model m: engine 'dbt' runs the nodes of a dbt: project, not model files" in str(p) for p in found), found


def test_an_unquoted_name_in_config_is_a_validation_error_with_the_quoted_form(tmp_path: Path) -> None:
    path = write(tmp_path, "-- orders, cleaned\n{{ config(schema=analytics) }}\nselect * from orders\n")
    (tmp_path / "models" / "n.sql").write_text("{{ config(materialized=mat) }}\nselect * from nowhere\n", encoding="utf-8")
    _, found = parse_project(path, ahead=True)
    messages = [str(p) for p in found]
    m, n = tmp_path / "models" / "m.sql", tmp_path / "models" / "n.sql"
    assert f"{m}:2: model m: config(schema=...): 'analytics' is undefined; quote it: schema='analytics'" in messages, messages
    assert f"{n}:1: model n: config(materialized=...): 'mat' is undefined; quote it: materialized='mat'" in messages, messages
    assert all("\n" not in message for message in messages)


def test_an_unquoted_name_in_ref_source_or_var_says_to_quote_it() -> None:
    with pytest.raises(ConfigError) as caught:
        render("select *\nfrom {{ ref(users) }}\n", "m.sql")
    assert caught.value.line == 2 and "ref(users): 'users' is undefined; quote it: ref('users')" in str(caught.value)
    assert "Undefined" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        render("select *\nfrom {{ source('crm', users) }}\n", "m.sql")
    assert "source('crm', users): 'users' is undefined; quote it: source('crm', 'users')" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        render("select {{ var(start) }}\n", "m.sql")
    assert caught.value.line == 1 and "var(start): 'start' is undefined; quote it: var('start')" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        render("{{ config(unique_key=[id, name]) }}\nselect 1\n", "m.sql")
    assert "config(unique_key=...): 'id' is undefined; quote it" in str(caught.value)
