"""Objets.json as found in the field: parents as strings, names repeated across stages, Zone, EtatObjet, metadata."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pytest

from sluice.errors import TerminalError
from sluice.project.load import load_project, parse_project
from sluice.project.model import DEFAULT_STAGES, ConnectionSpec, ObjectSpec, Origin
from sluice.project.objets_dates import DATE_PARTS, with_date_parts
from sluice.project.objets_json import parse_parents, zone_stage
from sluice.project.objets_mapping import Mapped, ObjetsSettings, map_object, write_mode

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


# The mapping of the fields to work (sluice.yaml beside it: objets: {file: Objets.json}), docs/objets-json.md.


BASIC = {"type": "basic", "username": "ana", "password_env": "SLUICE_OBJET_1001_PASSWORD"}


def objets_object(**fields: Any) -> ObjectSpec:
    return ObjectSpec(id=1001, name="orders", stage="ingest", parents=(), origin=Origin("Objets.json", 2), metadata=fields)


def mapped(env: dict[str, str] | None = None, **fields: Any) -> Mapped:
    return map_object(objets_object(**fields), ObjetsSettings(records="data"), DEFAULT_STAGES, {}, env or {})


def test_an_http_json_url_becomes_a_rest_source() -> None:
    result = mapped(URL="https://erp.example.com/odata/Orders?top=5&skip=0", Format="JSON", TypeAuthentification="None")
    assert result.note is None and result.object.source is not None and result.object.source.kind == "rest"
    options = result.object.source.options
    assert (options.base_url, options.path, options.params, options.records, options.auth) == (
        "https://erp.example.com", "/odata/Orders", {"top": "5", "skip": "0"}, "data", None
    )  # fmt: skip
    assert mapped(URL="http://h/x").object.source is not None  # Format absent: a JSON API


@pytest.mark.parametrize(
    ("auth", "env", "expected"),
    [
        ("http basic", {"SLUICE_OBJET_1001_USER": "ana"}, BASIC),
        ("Basic", {"SLUICE_OBJET_1001_USER": "ana"}, BASIC),
        ("Bearer", {"SLUICE_OBJET_1001_TOKEN": "t"}, {"type": "bearer", "token_env": "SLUICE_OBJET_1001_TOKEN"}),
        ("API key", {"SLUICE_OBJET_1001_API_KEY": "k"}, {"type": "api_key", "key_env": "SLUICE_OBJET_1001_API_KEY"}),
        ("aucune", {}, None),
        (None, {}, None),
    ],
)  # fmt: skip
def test_type_authentification_gives_the_rest_auth(auth: Any, env: dict[str, str], expected: Any) -> None:
    result = mapped(env, URL="https://erp.example.com/orders", TypeAuthentification=auth)
    assert result.note is None and result.object.source is not None
    found = result.object.source.options.auth
    assert (msgspec.to_builtins(found) if found is not None else None) == expected


def test_credentials_come_from_a_connection_named_after_the_object_or_the_host() -> None:
    for name in ("objets_1001", "erp_example_com"):
        connections = {name: ConnectionSpec(name, "https://ana:pw@erp.example.com", Origin("sluice.yaml"))}
        obj = objets_object(URL="https://erp.example.com/orders", TypeAuthentification="Basic")
        source = map_object(obj, ObjetsSettings(), DEFAULT_STAGES, connections, {}).object.source
        assert source is not None and source.options.connection == name
        assert source.options.path == "https://erp.example.com/orders"
        assert msgspec.to_builtins(source.options.auth) == {"type": "basic"}


@pytest.mark.parametrize(
    ("fields", "note"),
    [
        ({"URL": "https://x.example.com/a", "TypeAuthentification": "OAuth2"}, "TypeAuthentification 'OAuth2' is not supported"),
        ({"URL": "https://x.example.com/a", "TypeAuthentification": "Basic"}, "SLUICE_OBJET_1001_PASSWORD"),
        ({"URL": "https://x.example.com/a", "TypeAuthentification": "Bearer"}, "or set SLUICE_OBJET_1001_TOKEN"),
        ({"URL": "sftp://x.example.com/a.csv", "Format": "CSV"}, "URL scheme sftp:// is not supported"),
        ({"URL": "https://x.example.com/a.csv", "Format": "CSV"}, "Format 'CSV' over https is not read yet"),
        ({"URL": "data/a.xml", "Format": "XML"}, "Format 'XML' of a file is unknown"),
        ({"AppendMode": "sometimes"}, "AppendMode 'sometimes' is unknown"),
        ({"NiveauHierarchique": "week"}, "NiveauHierarchique 'week' is unknown; use year, month, day or hour"),
        ({"DataLakeRootFolder": "/lake/r@w/x"}, "'r@w' cannot be a lake layer"),
    ],
)  # fmt: skip
def test_a_field_that_cannot_be_mapped_leaves_a_no_op_and_a_note(fields: dict[str, Any], note: str) -> None:
    result = mapped(**fields)
    assert result.object.kind == "noop" and result.object.partition_by == () and result.object.layer is None
    assert result.note is not None and result.note.startswith("object 1001 (orders): ") and note in result.note
    assert result.note.endswith("it stays a no-op")


@pytest.mark.parametrize(
    ("url", "kind", "path"),
    [("file:///srv/data/a.parquet", "parquet", "/srv/data/a.parquet"), ("data/a.csv", "csv", "data/a.csv")],
)
def test_a_file_url_or_a_path_becomes_a_file_source(url: str, kind: str, path: str) -> None:
    source = mapped(URL=url, Format=kind.upper()).object.source
    assert source is not None and (source.kind, source.options.path) == (kind, path)


@pytest.mark.parametrize(
    ("value", "mode"),
    [(False, "replace"), ("full", "replace"), ("Full", "replace"), (True, "append"), ("incremental", "append"),
     ("append", "append"), ("merge", "merge")],
)  # fmt: skip
def test_append_mode_gives_the_write_mode(value: Any, mode: str) -> None:
    assert write_mode(value) == mode and mapped(AppendMode=value).mode == mode


@pytest.mark.parametrize(
    ("folder", "layer"),
    [("/lake/raw/crm", "raw"), ("/raw/sales", "raw"), ("/lake/standardized/crm", "cleaned"),
     ("/datalake/application/bi", "curated"),
     ("bronze/sales", "bronze"), ("/lake", None), (None, None)],
)  # fmt: skip
def test_data_lake_root_folder_gives_the_layer(folder: Any, layer: str | None) -> None:
    assert mapped(DataLakeRootFolder=folder).object.layer == layer


@pytest.mark.parametrize(
    ("level", "parts"),
    [("year", ("year",)), ("Mois", ("year", "month")), ("day", ("year", "month", "day")), ("heure", DATE_PARTS)],
)
def test_niveau_hierarchique_partitions_by_date_parts(level: str, parts: tuple[str, ...]) -> None:
    obj = mapped(NiveauHierarchique=level).object
    assert obj.partition_by == parts and obj.date_parts == parts


def test_append_mode_sets_a_destination_mode_sluice_yaml_leaves_out(tmp_path: Path) -> None:
    write_records(tmp_path, [{"IdObjet": 1001, "IdObjet_Parent": None, "NomObjet": "orders", "AppendMode": True, "x": 1}])
    (tmp_path / "sluice.yaml").write_text(
        "objets: {file: Objets.json}\n"
        "connections: {wh: 'duckdb:///wh.duckdb'}\n"
        "objects:\n"
        "  - {id: 1001, source: {type: csv, path: a.csv}, destination: {connection: wh, table: orders}, metadata: {y: 2}}\n"
        "  - {id: 2001, name: totals, parents: [1001], sql: select count(*) as n from orders,"
        " destination: {connection: wh, table: totals, mode: replace}}\n",
        encoding="utf-8",
    )
    project = load_project(tmp_path / "sluice.yaml")
    orders = project.objects[1001]
    assert orders.name == "orders" and orders.source is not None and orders.destination is not None
    assert orders.destination.mode == "append" and orders.metadata == {"NomObjet": "orders", "AppendMode": True, "x": 1, "y": 2}
    assert project.objects[2001].destination is not None and project.objects[2001].destination.mode == "replace"


def test_the_field_example_with_a_sluice_yaml_maps_what_it_can_and_notes_the_rest(tmp_path: Path) -> None:
    shutil.copy(FIELD, tmp_path / "Objets.json")
    assert parse_project(tmp_path / "Objets.json")[0].notes[0].startswith("6 objects carry a URL")  # type: ignore[union-attr]
    (tmp_path / "sluice.yaml").write_text("objets: {file: Objets.json}\n", encoding="utf-8")
    project, found = parse_project(tmp_path, ahead=True)
    assert found == [] and project is not None and len(project.objects) == 21
    assert sorted(project.left_out) == [1007, 2009]
    assert [note.split(":")[0] for note in project.notes] == [
        f"object {oid} ({project.objects[oid].name})" for oid in (1001, 1002, 1003, 1004, 1005)
    ]
    countries = project.objects[1006]
    assert countries.source is not None and countries.source.options.base_url == "https://restcountries.example.com"
    assert project.objects[1001].metadata["TypeAuthentification"] == "OAuth2"
    assert project.objects[2001].layer == "cleaned" and project.objects[3001].layer == "curated"


def test_date_parts_come_from_the_load_time_or_a_date_column() -> None:
    schema = pa.schema([("d", pa.timestamp("us")), ("year", pa.int64())])
    batch = pa.record_batch({"d": [dt.datetime(2021, 3, 4, 5)], "year": [1999]}, schema=schema)
    data = with_date_parts(pa.RecordBatchReader.from_batches(schema, [batch]), DATE_PARTS, "d", "object 1").read_all()
    assert data.to_pylist()[0] | {"d": None} == {"d": None, "year": 1999, "month": 3, "day": 4, "hour": 5}  # year kept
    plain = pa.schema([("x", pa.int64())])
    now = with_date_parts(pa.RecordBatchReader.from_batches(plain, [pa.record_batch({"x": [1]})]), ("year",), None, "o")
    assert now.read_all().column("year").to_pylist() == [dt.datetime.now(dt.UTC).year]
    with pytest.raises(TerminalError, match=r"^object 1001 \(orders\): date_column 'when' is not in the data \(columns: x\)"):
        with_date_parts(pa.RecordBatchReader.from_batches(plain, []), ("year",), "when", "object 1001 (orders)")


def test_an_object_completed_with_work_gets_no_note_and_one_without_work_keeps_it(tmp_path: Path) -> None:
    url = {"IdObjet_Parent": None, "URL": "https://x.example.com/a", "TypeAuthentification": "OAuth2"}
    write_records(tmp_path, [{"IdObjet": 1001, **url}, {"IdObjet": 1002, **url}])
    (tmp_path / "sluice.yaml").write_text(
        "objets: {file: Objets.json}\nobjects:\n  - {id: 1001, source: {type: csv, path: a.csv}}\n  - {id: 1002, lake: false}\n"
    )
    project = load_project(tmp_path / "sluice.yaml")
    assert project.objects[1001].kind == "source" and project.objects[1002].kind == "noop"
    assert [note.split(":")[0] for note in project.notes] == ["object 1002 (obj_1002)"]
