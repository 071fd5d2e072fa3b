"""Reading the models/ folder: names, ids, stages, configuration, parents inferred from the SQL, and the
problems ``sluice validate`` reports at the model file's line."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.errors import ConfigError, ValidationFailed
from sluice.project.load import load_project, parse_project
from sluice.project.model_sql import THIS, parse_model_text
from sluice.project.models import derived_id

HEAD = """\
connections:
  dw: postgresql://nobody@127.0.0.1:1/dw
objects:
  - {id: 1001, name: users, source: {type: csv, path: users.csv}}
  - {id: 1002, name: orders, source: {type: csv, path: orders.csv}}
  - {id: 2001, name: users, parents: [1001], sql: select * from users, destination: {connection: dw, table: staging.users}}
"""


def project(tmp_path: Path, files: dict[str, str], extra: str = "") -> Path:
    (tmp_path / "sluice.yaml").write_text(HEAD + extra, encoding="utf-8")
    for name, text in files.items():
        path = tmp_path / "models" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def problems(path: Path) -> list[str]:
    _, found = parse_project(path, ahead=True)
    return [str(problem) for problem in found]


def by_name(path: Path) -> dict[str, object]:
    loaded = load_project(path)
    return {obj.name: obj for obj in loaded.objects.values() if obj.model is not None}


def test_parents_come_from_the_tables_read_not_ctes_with_ref_and_qualified_names(tmp_path: Path) -> None:
    path = project(
        tmp_path,
        {
            "staging/stg_orders.sql": "select * from {{ ref('orders') }}",
            "marts/fct.sql": (
                "with recent as (select * from {{ ref('stg_orders') }})\n"
                "select * from recent join cleaned.users u using (id) join raw.users r using (id)"
            ),
        },
    )
    loaded = load_project(path)
    models = {obj.name: obj for obj in loaded.objects.values() if obj.model is not None}
    stg, fct = models["stg_orders"], models["fct"]
    assert stg.parents == (1002,)
    assert set(fct.parents) == {stg.id, 2001, 1001}
    assert fct.model is not None and dict(fct.model.parents) == {"stg_orders": stg.id, "cleaned.users": 2001, "raw.users": 1001}
    assert fct.stage == "application" and fct.model.path == "models/marts/fct.sql"


def test_ids_are_derived_from_names_in_the_range_and_stable(tmp_path: Path) -> None:
    path = project(tmp_path, {"a.sql": "select * from orders"}, "models: {ids: 5000-5999}\n")
    model = by_name(path)["a"]
    assert model.id == derived_id("a", 5000, 5999) == derived_id("a", 5000, 5999)  # type: ignore[attr-defined]
    assert 5000 <= model.id <= 5999  # type: ignore[attr-defined]


def test_an_id_clash_names_both_and_says_what_to_do(tmp_path: Path) -> None:
    path = project(tmp_path, {"a.sql": "{{ config(id=1002) }}\nselect * from orders"})
    found = problems(path)
    assert any("models/a.sql:1: model a: its id 1002 (set in its config) is also object 1002 (orders" in p for p in found)


def test_unknown_table_is_reported_at_its_line_with_did_you_mean(tmp_path: Path) -> None:
    path = project(tmp_path, {"m.sql": "select *\nfrom {{ ref('order') }}"})
    found = problems(path)
    where = f"{tmp_path / 'models' / 'm.sql'}:2: "
    assert found[0].startswith(where + "model m: the SQL reads 'order', which is no model, object or declared source.")
    assert "Did you mean 'orders'?" in found[0]
    with pytest.raises(ValidationFailed):
        load_project(path)


def test_a_cycle_among_models_names_them(tmp_path: Path) -> None:
    path = project(tmp_path, {"a.sql": "select * from b", "b.sql": "select * from {{ ref('a') }}"})
    found = [p for p in problems(path) if "dependency cycle" in p]
    assert len(found) == 1 and "dependency cycle among models: a (" in found[0] and "b (" in found[0]


def test_source_binds_to_a_declared_warehouse_table(tmp_path: Path) -> None:
    extra = "models:\n  engine: warehouse\n  sources: {crm: {schema: crm_raw, tables: [customers]}}\n"
    path = project(tmp_path, {"c.sql": "select * from {{ source('crm', 'customers') }} join staging.users using (id)"}, extra)
    model = by_name(path)["c"]
    spec = model.model  # type: ignore[attr-defined]
    assert spec.sources == (("crm.customers", "crm_raw.customers"),)
    assert spec.parents == (("staging.users", 2001),)
    assert spec.connection == "dw" and spec.target == "c" and spec.dialect == "postgres"


def test_warehouse_model_reading_a_table_not_in_the_warehouse_is_refused(tmp_path: Path) -> None:
    path = project(tmp_path, {"w.sql": "{{ config(engine='warehouse') }}\nselect * from\n  orders"})
    found = problems(path)
    assert any(
        "models/w.sql:3: model w: runs in the warehouse but reads 'orders', object 1002 (orders), which has no destination" in p
        for p in found
    )


def test_a_spark_model_is_read_with_the_spark_engine_plugin(tmp_path: Path) -> None:
    path = project(tmp_path, {"s.sql": "{{ config(engine='spark') }}\nselect * from orders"})
    assert not any("model s" in p for p in problems(path))
    spec = next(o for o in load_project(path).objects.values() if o.name == "s")
    assert spec.engine == "spark" and spec.model is not None and spec.model.dialect == "spark"


def test_config_layers_yaml_defaults_folders_model_then_file(tmp_path: Path) -> None:
    extra = (
        "models:\n  materialized: view\n  config:\n    marts/: {materialized: table}\n"
        "    m2: {materialized: incremental, unique_key: id}\n"
    )
    path = project(
        tmp_path,
        {
            "a.sql": "select * from orders",
            "marts/m1.sql": "select * from orders",
            "marts/m2.sql": "select * from orders",
            "marts/m3.sql": "{{ config(materialized='incremental', unique_key=['id', 'x']) }}\nselect * from orders",
        },
        extra,
    )
    models = {name: obj.model for name, obj in by_name(path).items()}  # type: ignore[attr-defined]
    assert models["a"].materialized == "view"
    assert models["m1"].materialized == "table"
    assert models["m2"].materialized == "incremental" and models["m2"].unique_key == ("id",)
    assert models["m3"].unique_key == ("id", "x")


def test_incremental_needs_a_unique_key_and_unknown_config_keys_are_refused(tmp_path: Path) -> None:
    path = project(tmp_path, {"i.sql": "{{ config(materialized='incremental', uniq_key='id') }}\nselect * from orders"})
    found = problems(path)
    assert any("model i: config()" in p and "uniq_key" in p for p in found)


def test_config_call_problems_point_at_the_model_file_and_line(tmp_path: Path) -> None:
    """A new user's trial: a wrong config() value was reported at a line of sluice.yaml."""
    path = project(tmp_path, {"c.sql": "-- c\n\n{{ config(materialized='tabel') }}\nselect * from orders"})
    models_file = tmp_path / "models" / "c.sql"
    assert any(p.startswith(f"{models_file}:3: model c: config(): materialized:") for p in problems(path))


def test_a_spark_model_without_pyspark_says_which_extra_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sluice.plugins.registry import registry

    plugin = registry().get("engine", "spark")
    real = type(plugin).missing_modules
    monkeypatch.setattr(type(plugin), "missing_modules", lambda self: ["pyspark"] if self is plugin else real(self))
    files = {"s.sql": "{{ config(engine='spark') }}\nselect * from orders"}
    found = [p for p in problems(project(tmp_path, files)) if "source path" not in p]
    assert len(found) == 1 and "model s: engine 'spark' is not available" in found[0], found
    assert "pip install 'sluice[spark]'" in found[0]


def test_a_model_left_out_for_a_problem_is_not_also_an_unknown_parent(tmp_path: Path) -> None:
    """A new user's trial: a bad engine on b also gave 'unknown parent <id>' on every model reading b."""
    files = {"b.sql": "{{ config(engine='duckbd') }}\nselect * from orders", "c.sql": "select * from {{ ref('b') }}"}
    found = [p for p in problems(project(tmp_path, files)) if "source path" not in p]  # users.csv, orders.csv: absent
    assert len(found) == 1 and "model b: engine 'duckbd' is not available" in found[0], found


def test_the_definition_hash_covers_sql_and_config(tmp_path: Path) -> None:
    path = project(tmp_path, {"h.sql": "select * from orders"})
    first = by_name(path)["h"].definition_hash()  # type: ignore[attr-defined]
    (tmp_path / "models" / "h.sql").write_text("select id from orders", encoding="utf-8")
    second = by_name(path)["h"].definition_hash()  # type: ignore[attr-defined]
    (tmp_path / "sluice.yaml").write_text(HEAD + "models: {config: {h: {materialized: view}}}\n", encoding="utf-8")
    third = by_name(path)["h"].definition_hash()  # type: ignore[attr-defined]
    assert len({first, second, third}) == 3


def test_rendering_keeps_lines_and_both_incremental_forms() -> None:
    text = (
        "{{ config(materialized='incremental', unique_key='id') }}\n"
        "select * from {{ ref('events') }}\n"
        "{% if is_incremental() %}\n"
        "where ts > (select max(ts) from {{ this }})\n"
        "{% endif %}\n"
    )
    parsed = parse_model_text(text, "m.sql")
    assert parsed.full_sql.count("\n") == text.count("\n") and "where" not in parsed.full_sql
    assert parsed.incremental_sql is not None and f"from {THIS})" in parsed.incremental_sql
    assert [(t.text, t.line) for t in parsed.tables] == [("events", 2)]


def test_unsupported_template_tags_are_refused_at_their_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_model_text("select 1\n{% for x in y %}\n", "m.sql")
    assert caught.value.line == 2 and "unsupported template tag" in str(caught.value)


def test_a_lake_model_cannot_read_the_warehouse(tmp_path: Path) -> None:
    extra = "models:\n  sources: {crm: {tables: [customers]}}\n  config: {w: {engine: warehouse}}\n"
    path = project(
        tmp_path,
        {
            "w.sql": "select * from staging.users",
            "d.sql": "select *\nfrom {{ ref('w') }}\njoin {{ source('crm', 'customers') }} using (id)",
        },
        extra,
    )
    found = problems(path)
    assert any(
        "models/d.sql:2: model d: reads 'w', but model w runs in the warehouse and writes nothing to the lake" in p for p in found
    )
    assert any("models/d.sql:3: model d: reads source 'crm.customers', a warehouse table" in p for p in found)


def test_a_duckdb_view_is_inlined_so_its_readers_get_its_parents(tmp_path: Path) -> None:
    path = project(tmp_path, {"v.sql": "{{ config(materialized='view') }}\nselect * from orders", "t.sql": "select * from v"})
    models = by_name(path)
    view, table = models["v"], models["t"]
    assert view.lake is False  # type: ignore[attr-defined]
    assert set(table.parents) == {view.id, 1002}  # type: ignore[attr-defined]
    assert table.model.views == (view.id,)  # type: ignore[attr-defined]


def test_a_model_reading_its_own_name_is_told_to_qualify_the_object_not_a_cycle(tmp_path: Path) -> None:
    path = project(tmp_path, {"a/orders.sql": "select *\nfrom orders", "b/loop.sql": "select * from loop"})
    found = problems(path)
    assert not any("dependency cycle" in p for p in found), found
    orders, loop = tmp_path / "models" / "a" / "orders.sql", tmp_path / "models" / "b" / "loop.sql"
    mine = [p for p in found if p.startswith(f"{orders}:2: model orders reads 'orders', its own name")]
    assert len(mine) == 1 and "object 1002 (orders) as 'raw.orders' or 'ingest.orders'" in mine[0], found
    assert any(p.startswith(f"{loop}:1: model loop reads 'loop', its own name") and "{{ this }}" in p for p in found), found
