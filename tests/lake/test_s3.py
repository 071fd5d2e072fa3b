"""The S3 lake in projects: ``lake: s3://...`` and typed options, a DuckDB SQL transform over an S3 parent,
credentials from the environment or a connection, and how refused and unreachable servers are reported."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pytest

from helpers import load, write_yaml
from lake.contract import _delete_bucket
from models_project import YAML, run_incremental_twice
from sluice.errors import ConfigError, TerminalError, TransientError, ValidationFailed
from sluice.lake.registry import open_lake
from sluice.lake.s3 import S3Lake, s3_filesystem
from sluice.runtime.run import RunOptions, run_project
from sluice.server.sample import sample_rows

pytestmark = pytest.mark.s3


def endpoint_and_keys(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port}", unquote(parts.username or ""), unquote(parts.password or "")


@pytest.fixture
def buckets(s3_url: str) -> Iterator[list[str]]:
    names = [f"sluice-test-{uuid.uuid4().hex[:10]}-{layer}" for layer in ("raw", "cleaned", "enriched")]
    yield names
    for name in names:
        _delete_bucket(s3_url, name)


PROJECT = """
lake: {lake}
{connections}
objects:
  - id: 1001
    name: orders
    source: {{type: csv, path: orders.csv}}
    partition_by: [dt]
  - id: 2001
    name: daily
    parents: [1001]
    sql: "select dt, count(*) as n, sum(amount) as total from orders group by dt order by dt"
  - {{id: 3001, name: top, parents: [2001], sql: "select * from cleaned.daily where n > 1"}}
  - {{id: 3002, name: doubled, parents: [1001], python: "double:amounts"}}
"""


def project_folder(tmp_path: Path, lake: str, connections: str = "") -> Path:
    folder = tmp_path / "project"
    write_yaml(folder, PROJECT.format(lake=lake, connections=connections))
    (folder / "orders.csv").write_text("id,dt,amount\n1,2026-11-30,10\n2,2026-11-30,5\n3,2026-12-01,7\n", encoding="utf-8")
    (folder / "double.py").write_text(
        "import pyarrow.compute as pc\n\n\ndef amounts(orders):\n"
        "    return orders.select(['id']).append_column('twice', pc.multiply(orders['amount'], 2))\n",
        encoding="utf-8",
    )
    return folder


def test_a_project_on_an_s3_url_runs_sql_over_s3_parents(
    tmp_path: Path, s3_url: str, buckets: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, key, secret = endpoint_and_keys(s3_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    project = load(project_folder(tmp_path, f"s3://{buckets[0]}/lake?endpoint={endpoint}&keep_versions=3"))
    assert project.lake.kind == "s3"
    summary = run_project(project, RunOptions())
    assert summary.status == "succeeded", {oid: s.error for oid, s in summary.objects.items()}
    lake = open_lake(project)
    daily = lake.read("cleaned/daily").read_all().to_pylist()
    assert [(row["n"], row["total"]) for row in daily] == [(2, 15), (1, 7)]
    assert lake.read("curated/top").read_all().num_rows == 1
    assert sorted(lake.read("curated/doubled").read_all().column("twice").to_pylist()) == [10, 14, 20]
    sample, error = sample_rows(lake, "raw/orders", limit=2)
    assert error is None and sample is not None and len(sample["rows"]) == 2
    assert str(lake.parquet_path("raw/orders")).startswith(f"s3://{buckets[0]}/lake/raw/orders/v=")
    again = run_project(project, RunOptions())
    assert {s.status for s in again.objects.values()} == {"skipped"}  # fresh: the lake still holds each output


def test_layers_map_to_buckets_with_credentials_from_a_connection(tmp_path: Path, s3_url: str, buckets: list[str]) -> None:
    raw, cleaned, enriched = buckets
    lake = f"{{type: s3, connection: lake_s3, layers: {{raw: {raw}, cleaned: {cleaned}/sluice, curated: {enriched}}}}}"
    project = load(project_folder(tmp_path, lake, f"connections: {{lake_s3: '{s3_url}'}}"))
    summary = run_project(project, RunOptions())
    assert summary.status == "succeeded", {oid: s.error for oid, s in summary.objects.items()}
    fs = s3_filesystem(s3_url)
    assert fs.get_file_info(f"{raw}/orders/_manifest.json").is_file
    assert fs.get_file_info(f"{cleaned}/sluice/daily/_manifest.json").is_file
    assert fs.get_file_info(f"{enriched}/top/_manifest.json").is_file


def test_an_unmapped_layer_says_which_option_to_set(s3_url: str) -> None:
    lake = S3Lake(s3_filesystem(s3_url), {"raw": "some-bucket"})
    with pytest.raises(TerminalError, match=r"layer 'cleaned' has no bucket .*add it to 'lake: layers'"):
        lake.write("cleaned", "x", pa.table({"a": [1]}).to_reader())


def test_wrong_credentials_are_terminal_and_a_dead_endpoint_transient(s3_url: str, buckets: list[str]) -> None:
    endpoint, key, _ = endpoint_and_keys(s3_url)
    refused = S3Lake(s3_filesystem(endpoint, access_key=key, secret_key="wrong"), {}, default_root=buckets[0])
    with pytest.raises(TerminalError, match=r"lake \(s3\): s3://.* refused: .*check the bucket, the credentials") as raised:
        refused.write("raw", "x", pa.table({"a": [1]}).to_reader())
    assert "\n" not in str(raised.value)
    dead = S3Lake(
        s3_filesystem("http://127.0.0.1:9", access_key=key, secret_key="x", request_timeout_s=2), {}, default_root="b-dead"
    )
    with pytest.raises(TransientError, match=r"lake \(s3\)"):
        dead.exists("raw/x")


@pytest.mark.parametrize(
    ("lake", "message"),
    [
        ("s3://Bad_Bucket?endpoint=http://127.0.0.1:1", r"does not name a valid bucket"),
        ("s3://bucket?endpoint=http://127.0.0.1:1&keep_version=2", r"keep_version"),
        ("{type: s3, layers: {raw: 'x'}}", r"does not name a valid bucket"),
        ("{type: s3, url: 's3://b-ok', endpoint: 'ftp://host'}", r"endpoint 'ftp://host' is not an http\(s\) URL"),
    ],
)
def test_bad_lake_settings_are_one_line_errors(tmp_path: Path, lake: str, message: str) -> None:
    folder = project_folder(tmp_path, lake)
    with pytest.raises((ConfigError, ValidationFailed)) as raised:
        open_lake(load(folder))
    assert raised.match(message)


def test_incremental_sql_models_on_the_s3_lake(
    tmp_path: Path, s3_url: str, buckets: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A models/ folder on ``lake: s3://``: parents scanned through Arrow, an incremental model's previous output
    found on S3 (only the changed rows are read on the second run)."""
    endpoint, key, secret = endpoint_and_keys(s3_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    project, rows = run_incremental_twice(tmp_path, f"lake: s3://{buckets[0]}/lake?endpoint={endpoint}\n" + YAML)
    assert project.lake.kind == "s3"
    assert rows == [(1, "ANN"), (2, "BOBBY"), (3, "CY")]
