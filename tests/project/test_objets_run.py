"""End to end: an Objets.json project (with its sluice.yaml) reads a REST API with basic auth from the
environment, writes a year-partitioned output to the lake layer DataLakeRootFolder names, and a child
object (completed by sluice.yaml with SQL) works on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.connectors.rest_server import FakeApi
from tests.helpers import summary_json

from sluice.lake.registry import open_lake
from sluice.project.load import load_project

RECORDS = [
    {"id": 1, "name": "a", "updated_at": "2023-12-31T23:00:00Z"},
    {"id": 2, "name": "b", "updated_at": "2024-01-01T08:00:00Z"},
    {"id": 3, "name": "c", "updated_at": "2024-06-01T08:00:00Z"},
]


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi([dict(record) for record in RECORDS])
    server.auth = ("basic", "ana", "s3cret")
    yield server
    server.close()


def sluice(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def project(folder: Path, url: str) -> Path:
    folder.mkdir()
    records = [
        {"IdObjet": 1001, "NomObjet": "Orders", "IdObjet_Parent": None, "Zone": "1-Raw", "EtatObjet": "Actif",
         "URL": f"{url}/changes", "TypeAuthentification": "http basic", "Format": "json", "AppendMode": "full",
         "DataLakeRootFolder": "/lake/raw/shop", "NiveauHierarchique": "year"},
        {"IdObjet": 2001, "NomObjet": "Orders", "IdObjet_Parent": "1001", "Zone": "2-Standardized", "EtatObjet": "Actif",
         "Format": "Parquet", "AppendMode": False, "DataLakeRootFolder": "/lake/standardized/shop"},
    ]  # fmt: skip
    (folder / "Objets.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
    (folder / "sluice.yaml").write_text(
        "name: shop\n"
        "objets: {file: Objets.json, date_column: updated_at}\n"
        "objects:\n"
        "  - id: 2001\n"
        "    sql: select id, name, year from raw.Orders where year = 2024\n",
        encoding="utf-8",
    )
    return folder


def test_an_objets_json_project_reads_a_rest_api_into_a_partitioned_lake_output(
    tmp_path: Path, api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = project(tmp_path / "shop", api.url)
    env = {"SLUICE_OBJET_1001_USER": "ana", "SLUICE_OBJET_1001_PASSWORD": "s3cret"}
    result = sluice("validate", str(folder), env=env)
    assert result.returncode == 0, result.stderr
    assert "defines 2 objects" in result.stdout and "note:" not in result.stdout
    result = sluice("run", str(folder), "--json", env=env)
    assert result.returncode == 0, result.stderr
    summary = summary_json(result.stdout)
    assert summary["status"] == "succeeded"
    assert {oid: o["rows"] for oid, o in summary["objects"].items()} == {"1001": 3, "2001": 2}
    assert api.requests_to("/changes") == [{}]

    lake = tmp_path / "shop" / ".sluice" / "lake" / "raw" / "Orders"
    assert sorted(p.name for p in lake.rglob("year=*")) == ["year=2023", "year=2024"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    loaded = load_project(folder)
    orders = loaded.objects[1001]
    assert orders.source is not None and orders.source.kind == "rest" and orders.partition_by == ("year",)
    assert loaded.objects[2001].sql is not None and loaded.objects[2001].parents == (1001,)
    lake_api = open_lake(loaded)
    location = lake_api.current_location("cleaned", "Orders")
    assert location is not None
    child = lake_api.read(location).read_all()
    assert sorted(child.column("id").to_pylist()) == [2, 3] and set(child.column("year").to_pylist()) == {2024}


def test_without_credentials_the_object_stays_a_no_op_with_a_note(tmp_path: Path, api: FakeApi) -> None:
    folder = project(tmp_path / "shop", api.url)
    clean = {k: "" for k in ("SLUICE_OBJET_1001_USER", "SLUICE_OBJET_1001_PASSWORD")}
    result = sluice("validate", str(folder), env=clean)
    assert result.returncode == 0, result.stderr
    assert (
        "note: object 1001 (Orders): TypeAuthentification 'http basic' needs credentials: define a connection "
        "objets_1001 or 127_0_0_1 (https://user:${PASSWORD}@127.0.0.1), or set SLUICE_OBJET_1001_USER and "
        "SLUICE_OBJET_1001_PASSWORD; it stays a no-op"
    ) in result.stdout
    plan = json.loads(sluice("plan", str(folder), "--json", env=clean).stdout)
    assert len(plan["notes"]) == 1 and plan["notes"][0].startswith("object 1001 (Orders): TypeAuthentification")
    (folder / "sluice.yaml").write_text(
        (folder / "sluice.yaml").read_text().replace("date_column: updated_at}", "date_column: updated_at, strict: true}")
    )
    result = sluice("validate", str(folder), env=clean)
    assert result.returncode == 2 and "Objets.json:2: object 1001 (Orders): TypeAuthentification" in result.stderr


def test_credentials_from_a_connection_named_after_the_object(tmp_path: Path, api: FakeApi) -> None:
    folder = project(tmp_path / "shop", api.url)
    host = api.url.removeprefix("http://")
    text = (folder / "sluice.yaml").read_text()
    (folder / "sluice.yaml").write_text(
        text.replace("objects:\n", f"connections:\n  objets_1001: http://ana:${{SHOP_PASSWORD}}@{host}\nobjects:\n")
    )
    result = sluice("run", str(folder), "--json", env={"SHOP_PASSWORD": "s3cret"})
    assert result.returncode == 0, result.stderr
    assert summary_json(result.stdout)["objects"]["1001"]["rows"] == 3
