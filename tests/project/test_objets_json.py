"""Objets.json as found in the field: parents as strings, names repeated across stages, Zone, EtatObjet, metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sluice.project.load import load_project, parse_project
from sluice.project.objets_json import parse_parents, zone_stage

FIELD = Path(__file__).resolve().parents[2] / "examples" / "seed-002-field" / "Objets.json"


def write_records(tmp_path: Path, records: list[dict[str, Any]]) -> Path:
    path = tmp_path / "Objets.json"
    path.write_text("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n", encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    return [str(p) for p in parse_project(path)[1]]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ()),
        (1001, (1001,)),
        ("1001", (1001,)),
        ([1001, "1002"], (1001, 1002)),
        ("1001,1002, 1003", (1001, 1002, 1003)),
        ("1001;1002", (1001, 1002)),
        (" 1001 ; 1002 ,1003 ", (1001, 1002, 1003)),
        ("", ()),
    ],
)
def test_every_parent_shape_is_read(tmp_path: Path, value: Any, expected: tuple[int, ...]) -> None:
    records = [{"IdObjet": oid, "IdObjet_Parent": None} for oid in (1001, 1002, 1003)]
    path = write_records(tmp_path, [*records, {"IdObjet": 2001, "IdObjet_Parent": value}])
    assert load_project(path).objects[2001].parents == expected


@pytest.mark.parametrize("value", ["10a1", "1001 1002", [1001, "x"], 10.5, True, {"id": 1001}, "1001/1002"])
def test_a_malformed_parent_names_the_object_line_and_value(tmp_path: Path, value: Any) -> None:
    path = write_records(tmp_path, [{"IdObjet": 1001, "IdObjet_Parent": None}, {"IdObjet": 2001, "IdObjet_Parent": value}])
    found = problems(path)
    assert len(found) == 1, found
    bad = "x" if isinstance(value, list) else value
    assert found[0].startswith(f"{path}:3: object 2001: malformed IdObjet_Parent {bad!r}")
    assert "commas or semicolons" in found[0]
    assert parse_parents(value) is None


def test_names_repeat_across_stages_but_not_within_one(tmp_path: Path) -> None:
    records = [
        {"IdObjet": 1001, "IdObjet_Parent": None, "NomObjet": "Customers"},
        {"IdObjet": 2001, "IdObjet_Parent": "1001", "NomObjet": "Customers"},
        {"IdObjet": 3001, "IdObjet_Parent": "1001, 2001", "NomObjet": "Customers"},
    ]
    project = load_project(write_records(tmp_path, records))
    assert [o.name for o in project.objects.values()] == ["Customers"] * 3
    clash = write_records(tmp_path, [*records, {"IdObjet": 2002, "IdObjet_Parent": None, "NomObjet": "Customers"}])
    assert problems(clash) == [
        f"{clash}:5: object 2002 (Customers): name 'Customers' is also used by object 2001 in stage standardize; "
        "names must be unique within a stage, rename one"
    ]


def test_yaml_names_are_unique_per_stage_and_per_shared_layer(tmp_path: Path) -> None:
    path = tmp_path / "sluice.yaml"
    path.write_text(
        "stages:\n"
        "  ingest: {ids: 1000-1999, layer: raw}\n"
        "  extra: {ids: 2000-2999, layer: raw}\n"
        "  application: {ids: 3000+, layer: curated}\n"
        "objects:\n"
        "  - {id: 1001, name: a}\n"
        "  - {id: 2001, name: a, parents: [1001]}\n"
        "  - {id: 3001, name: a, parents: [2001]}\n",
        encoding="utf-8",
    )
    found = problems(path)
    assert len(found) == 1, found
    assert (
        "object 2001 (a): name 'a' is also used by object 1001 in stage ingest, which writes the same lake layer 'raw'"
        in found[0]
    )


@pytest.mark.parametrize(
    ("zone", "stage"),
    [("1-Raw", "ingest"), ("1 - raw", "ingest"), ("2-Standardized", "standardize"), ("2-STANDARDISÉ", "standardize"),
     ("3-Application", "application"), ("Application", "application"), ("3", "application")],
)  # fmt: skip
def test_zone_gives_the_stage(zone: str, stage: str) -> None:
    found = zone_stage(zone)
    assert found is not None and found.name == stage


def test_zone_decides_the_stage_of_an_id_outside_the_ranges(tmp_path: Path) -> None:
    path = write_records(tmp_path, [{"IdObjet": 42, "IdObjet_Parent": None, "Zone": "1-Raw"}])
    assert load_project(path).objects[42].stage == "ingest"


def test_zone_conflicting_with_the_id_names_object_line_zone_and_id(tmp_path: Path) -> None:
    path = write_records(tmp_path, [{"IdObjet": 1001, "IdObjet_Parent": None, "Zone": "2-Standardized"}])
    assert problems(path) == [
        f"{path}:2: object 1001: Zone '2-Standardized' is stage standardize (2000-2999) but id 1001 is in stage "
        "ingest (1000-1999); fix the Zone or the id"
    ]
    unknown = write_records(tmp_path, [{"IdObjet": 1001, "IdObjet_Parent": None, "Zone": "4-Gold"}])
    assert problems(unknown) == [f"{unknown}:2: object 1001: unknown Zone '4-Gold'; use 1-Raw, 2-Standardized or 3-Application"]


def test_inactive_objects_and_their_descendants_are_left_out(tmp_path: Path) -> None:
    records = [
        {"IdObjet": 1001, "IdObjet_Parent": None, "EtatObjet": "Actif"},
        {"IdObjet": 1002, "IdObjet_Parent": None, "EtatObjet": "inactif", "NomObjet": "old"},
        {"IdObjet": 2001, "IdObjet_Parent": "1001", "EtatObjet": "active"},
        {"IdObjet": 2002, "IdObjet_Parent": "1001;1002", "EtatObjet": "actif"},
        {"IdObjet": 3001, "IdObjet_Parent": "2002"},
        {"IdObjet": 3002, "IdObjet_Parent": "2001"},
    ]
    project = load_project(write_records(tmp_path, records))
    assert sorted(project.objects) == [1001, 2001, 3002]
    assert {oid: item.reason for oid, item in project.left_out.items()} == {
        1002: "EtatObjet is 'inactif', not active",
        2002: "parent 1002 (old) is left out",
        3001: "parent 2002 (obj_2002) is left out",
    }


def test_other_fields_are_kept_as_metadata(tmp_path: Path) -> None:
    record = {"IdObjet": 1001, "IdObjet_Parent": None, "URL": "https://x", "Fréquence": "Quotidienne", "AppendMode": True}
    metadata = load_project(write_records(tmp_path, [record])).objects[1001].metadata
    assert metadata == {"URL": "https://x", "Fréquence": "Quotidienne", "AppendMode": True}


def test_the_field_example_loads() -> None:
    project = load_project(FIELD)
    assert len(project.objects) == 21 and sorted(project.left_out) == [1007, 2009]
    assert [project.objects[oid].stage for oid in (1001, 2001, 3003)] == ["ingest", "standardize", "application"]
    assert {project.objects[oid].name for oid in (1001, 2001, 3003)} == {"Customers"}
    assert project.objects[2004].parents == (1004, 1003)
    assert project.objects[1001].metadata["TypeAuthentification"] == "OAuth2"
