"""Every validation case: a user error names the file/object and what to fix, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sluice.errors import ConfigError, ValidationFailed
from sluice.project.load import load_project, parse_project


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    _, problems = parse_project(path)
    return [str(p) for p in problems]


def test_objets_json_cycle_names_its_ids(tmp_path: Path) -> None:
    records = [
        {"IdObjet": 1001, "IdObjet_Parent": None},
        {"IdObjet": 2001, "IdObjet_Parent": [1001, 2002]},
        {"IdObjet": 2002, "IdObjet_Parent": 2003},
        {"IdObjet": 2003, "IdObjet_Parent": 2001},
    ]
    found = problems_of(write(tmp_path / "Objets.json", json.dumps(records)))
    assert len(found) == 1
    assert "dependency cycle" in found[0]
    for object_id in ("2001", "2002", "2003"):
        assert object_id in found[0]
    assert "1001" not in found[0].split("cycle")[1]


def test_self_parent_is_a_cycle(tmp_path: Path) -> None:
    found = problems_of(write(tmp_path / "Objets.json", '[{"IdObjet": 1001, "IdObjet_Parent": 1001}]'))
    assert any("cycle: 1001 -> 1001" in p for p in found)


def test_unknown_parent(tmp_path: Path) -> None:
    found = problems_of(write(tmp_path / "Objets.json", '[\n{"IdObjet": 2001, "IdObjet_Parent": 1999}\n]'))
    assert found == [
        f"{tmp_path / 'Objets.json'}:2: object 2001: unknown parent 1999; define object 1999 or remove it from the parents"
    ]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ('{"IdObjet": "1001", "IdObjet_Parent": null}', "malformed IdObjet '1001'"),
        ('{"IdObjet": 10.5, "IdObjet_Parent": null}', "malformed IdObjet 10.5"),
        ('{"IdObjet": true, "IdObjet_Parent": null}', "malformed IdObjet True"),
        ('{"IdObjet_Parent": null}', "malformed IdObjet None"),
        ('{"IdObjet": 2001, "IdObjet_Parent": ["x"]}', "malformed IdObjet_Parent 'x'"),
    ],
)
def test_malformed_ids(tmp_path: Path, record: str, expected: str) -> None:
    found = problems_of(write(tmp_path / "Objets.json", f"[\n  {record}\n]"))
    assert any(expected in p and ":2:" in p for p in found), found


def test_malformed_json_gives_line(tmp_path: Path) -> None:
    path = write(tmp_path / "Objets.json", '[\n {"IdObjet": 1001,\n "IdObjet_Parent": null\n ,]')
    with pytest.raises(ConfigError) as info:
        parse_project(path)
    assert info.value.line == 4
    assert "malformed JSON" in str(info.value)


def test_malformed_yaml_gives_line(tmp_path: Path) -> None:
    path = write(tmp_path / "sluice.yaml", "objects:\n  - id: 1001\n    parents: [1000\n  - id: 2\n")
    with pytest.raises(ConfigError) as info:
        parse_project(path)
    assert "malformed YAML" in str(info.value)
    assert info.value.line is not None and info.value.line >= 3


def test_unknown_connection_with_suggestion(tmp_path: Path) -> None:
    path = write(
        tmp_path / "sluice.yaml",
        """
connections:
  warehouse: postgresql://u@127.0.0.1/db
objects:
  - id: 1001
    name: users
    source: {type: sql, connection: warehose, table: users}
""",
    )
    found = problems_of(path)
    assert len(found) == 1
    assert "object 1001 (users): unknown connection 'warehose' in source" in found[0]
    assert "Did you mean 'warehouse'?" in found[0]
    assert ":7:" in found[0]  # the line of the connection key itself


def test_bad_stage_name_on_object(tmp_path: Path) -> None:
    path = write(tmp_path / "sluice.yaml", "objects:\n  - id: 1001\n    stage: ingset\n")
    found = problems_of(path)
    assert len(found) == 1
    assert "unknown stage 'ingset'" in found[0] and "Did you mean 'ingest'?" in found[0]


def test_bad_stage_name_in_stages(tmp_path: Path) -> None:
    path = write(tmp_path / "sluice.yaml", "stages:\n  Bad Stage!: {ids: 1000-1999}\nobjects:\n  - id: 1001\n")
    assert any("bad stage name 'Bad Stage!'" in p for p in problems_of(path))


def test_id_outside_every_stage(tmp_path: Path) -> None:
    found = problems_of(write(tmp_path / "Objets.json", '[{"IdObjet": 42, "IdObjet_Parent": null}]'))
    assert any("object 42 matches no stage" in p for p in found)


def test_duplicate_yaml_ids_and_names(tmp_path: Path) -> None:
    path = write(
        tmp_path / "sluice.yaml", "objects:\n  - {id: 1001, name: a}\n  - {id: 1001, name: b}\n  - {id: 1002, name: a}\n"
    )
    found = problems_of(path)
    assert any("defined twice" in p for p in found)
    assert any("name 'a' is also used by object 1001" in p for p in found)


OBJECT = "objects:\n  - {id: 1001, name: a}\n"
TWICE = {  # a section mapping names to entries, the second 'x' on line 4
    "connection": "connections:\n  x: postgresql://u@127.0.0.1/a\n  y: postgresql://u@127.0.0.1/b\n  x: postgresql://u@127.0.0.1/c\n",
    "schedule": "schedules:\n  x: {cron: '0 2 * * *'}\n  y: {cron: '0 3 * * *'}\n  x: {cron: '0 4 * * *'}\n",
    "sensor": "sensors:\n  x: {type: files, path: 'a/*'}\n  y: {type: files, path: 'b/*'}\n  x: {type: files, path: 'c/*'}\n",
    "stage": "stages:\n  x: {ids: 1000-1999}\n  y: {ids: 2000-2999}\n  x: {ids: 3000-3999}\n",
    "channel": (
        "alerts:\n  channels:\n    x: {type: webhook, url: 'http://127.0.0.1:1/a'}\n    x: {type: webhook, url: 'http://127.0.0.1:1/b'}\n"
    ),
}


@pytest.mark.parametrize("what", sorted(TWICE))
def test_a_name_given_twice_in_a_section_is_refused_at_the_second(tmp_path: Path, what: str) -> None:
    """YAML keeps the last of two equal keys silently: the first entry would vanish without a word."""
    path = write(tmp_path / "sluice.yaml", TWICE[what] + OBJECT)
    (problem,) = [p for p in problems_of(path) if "is defined twice" in p]
    assert problem.startswith(f"{path}:4: ")
    assert f"{what} 'x' is defined twice (YAML would keep only this one); {what} names must be unique: rename one" in problem


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path / "sluice.yaml",
        "objects:\n  - {id: 1001, parents: [7]}\n  - {id: 2001, stage: nope}\n  - {id: abc}\n",
    )
    with pytest.raises(ValidationFailed) as info:
        load_project(path)
    assert len(info.value.problems) == 3


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file or folder"):
        load_project(tmp_path / "nope")


def test_folder_without_definition(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no sluice\.yaml"):
        load_project(tmp_path)


def test_objets_json_merges_records_and_keeps_metadata(tmp_path: Path) -> None:
    records = [
        {"IdObjet": 1001, "IdObjet_Parent": None, "NomObjet": "clients", "Source": "crm"},
        {"IdObjet": 1002, "IdObjet_Parent": None},
        {"IdObjet": 2001, "IdObjet_Parent": 1001, "NomObjet": "clients_std"},
        {"IdObjet": 2001, "IdObjet_Parent": 1002},
        {"IdObjet": 3001, "IdObjet_Parent": [2001, 1001]},
    ]
    project = load_project(write(tmp_path / "Objets.json", json.dumps(records)))
    assert project.objects[2001].parents == (1001, 1002)
    assert project.objects[3001].parents == (2001, 1001)
    assert project.objects[1001].metadata == {"NomObjet": "clients", "Source": "crm"}
    assert project.objects[1001].name == "clients"
    assert project.objects[1002].name == "obj_1002"
    assert [project.objects[i].stage for i in (1001, 2001, 3001)] == ["ingest", "standardize", "application"]


def test_configurable_stage_rule(tmp_path: Path) -> None:
    path = write(
        tmp_path / "sluice.yaml",
        "stages:\n  load: {ids: 1-99, concurrency: 2}\n  serve: {ids: 100+}\n"
        "objects:\n  - {id: 5}\n  - {id: 150, parents: [5]}\n",
    )
    project = load_project(path)
    assert project.objects[5].stage == "load"
    assert project.objects[150].stage == "serve"
    assert project.stage("load").concurrency == 2


def test_env_expansion_in_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_TEST_DB", "postgresql://x@127.0.0.1/db")
    path = write(
        tmp_path / "sluice.yaml",
        "connections:\n  wh: ${SLUICE_TEST_DB}\n  other: ${NOT_SET_ANYWHERE:-sqlite:///a.db}\nobjects: []\n",
    )
    project = load_project(path)
    assert project.connections["wh"].url == "postgresql://x@127.0.0.1/db"
    assert project.connections["other"].url == "sqlite:///a.db"


def test_env_variable_missing(tmp_path: Path) -> None:
    path = write(tmp_path / "sluice.yaml", "connections:\n  wh: ${NOT_SET_ANYWHERE}\nobjects: []\n")
    assert any("NOT_SET_ANYWHERE" in p for p in problems_of(path))


def test_nested_source_options_keep_no_line_markers(tmp_path: Path) -> None:
    path = write(
        tmp_path / "sluice.yaml",
        "objects:\n  - id: 1001\n    source:\n      type: csv\n      path: a.csv\n      column_types: {x: string}\n",
    )
    project = load_project(path)
    source = project.objects[1001].source
    assert source is not None
    assert source.options.column_types == {"x": "string"}


S3_LAKE_PROJECT = """
name: t
lake: {type: s3, endpoint: "http://127.0.0.1:29000", layers: {raw: raw-data, claened: cleaned-data, curated: enriched}}
objects:
  - {id: 1, name: a, stage: ingest, source: {type: faker, schema: users, rows: 10}}
  - {id: 2, name: b, stage: standardize, parents: [1], sql: "select * from a"}
  - {id: 3, name: c, stage: application, parents: [2], sql: "select * from b", engine: spark}
"""


def test_s3_lake_layers_and_spark_are_checked_before_anything_runs(tmp_path: Path) -> None:
    """A new user's trial: a typo in 'lake: layers' and a Spark object on the S3 lake passed validation."""
    problems = problems_of(write(tmp_path / "sluice.yaml", S3_LAKE_PROJECT))
    assert any("lake: layers: 'claened' is no stage's or object's layer. Did you mean 'cleaned'?" in p for p in problems)
    assert any(":6: object 2 (b): writes lake layer 'cleaned', which 'lake: layers' does not map" in p for p in problems)
    assert any(":7: object 3 (c): engine spark needs the local lake" in p for p in problems)
    assert len(problems) == 3


def test_a_spark_streaming_object_may_write_the_s3_lake(tmp_path: Path) -> None:
    text = S3_LAKE_PROJECT.replace("claened: cleaned-data", "cleaned: cleaned-data") + (
        "  - {id: 4, name: d, engine: spark, source: {type: kafka, connection: 'kafka://127.0.0.1:1', topic: t,"
        " schema: {x: string}}, streaming: {trigger: {interval: 1s}}}\n"
    )
    problems = problems_of(write(tmp_path / "sluice.yaml", text))
    assert [p for p in problems if "needs the local lake" in p] == [
        next(p for p in problems if ":7: object 3 (c): engine spark needs the local lake" in p)
    ]


def test_an_s3_lake_url_covers_unmapped_layers(tmp_path: Path) -> None:
    text = S3_LAKE_PROJECT.replace("claened: cleaned-data", "cleaned: cleaned-data").replace(", engine: spark", "")
    path = write(tmp_path / "sluice.yaml", text.replace("layers: {raw: raw-data,", "url: s3://lake, layers: {raw: raw-data,"))
    assert problems_of(path) == []


def test_an_object_with_a_wrong_option_keeps_its_stage(tmp_path: Path) -> None:
    """``name: off`` (a YAML boolean) was also reported as 'matches no stage' although the stage was set."""
    text = "name: t\nobjects:\n  - {id: 1, name: off, stage: ingest, source: {type: faker, schema: users, rows: 1}}\n"
    problems = problems_of(write(tmp_path / "sluice.yaml", text))
    assert len(problems) == 1 and "name: expected str | null, got bool (YAML reads" in problems[0], problems


def test_a_templated_destination_table_is_refused_at_its_object(tmp_path: Path) -> None:
    """A new user's trial: ``table: "u_{{ ds_nodash }}"`` validated, then every date replaced one table literally
    named ``u_{{ ds_nodash }}`` (destination options are not rendered)."""
    (tmp_path / "sluice.yaml").write_text(
        "name: t\nconnections: {wh: 'sqlite:///wh.db'}\nobjects:\n"
        "  - {id: 1001, name: users, source: {type: faker, schema: users, rows: 3, seed: 1}}\n"
        "  - {id: 2001, name: u2, parents: [1001], sql: 'select user_id from users', "
        "destination: {connection: wh, table: 'u_{{ ds_nodash }}', mode: replace}}\n",
        encoding="utf-8",
    )
    (problem,) = problems_of(tmp_path / "sluice.yaml")
    assert problem.startswith(f"{tmp_path / 'sluice.yaml'}:5: object 2001 (u2): destination table 'u_{{{{ ds_nodash }}}}' holds")
    assert "rendered in sql: and source options only" in problem
