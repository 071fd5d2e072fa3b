"""Choosing a destination by connection URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.destinations.duckdb import DuckDBDestination
from sluice.destinations.postgres import PostgresDestination
from sluice.destinations.registry import open_destination
from sluice.destinations.sqlite import SQLiteDestination
from sluice.errors import ConfigError
from sluice.project.model import ConnectionSpec, Origin


def connection(url: str) -> ConnectionSpec:
    return ConnectionSpec("warehouse", url, Origin("sluice.yaml", 12))


@pytest.mark.parametrize(
    ("url", "cls"),
    [
        ("postgresql://u@127.0.0.1/db", PostgresDestination),
        ("postgres://u@127.0.0.1/db", PostgresDestination),
        ("postgresql+psycopg://u@127.0.0.1/db", PostgresDestination),
        ("sqlite:///out.db", SQLiteDestination),
        ("duckdb:///out.duckdb", DuckDBDestination),
    ],
)
def test_scheme_chooses_the_implementation(url: str, cls: type, tmp_path: Path) -> None:
    dest = open_destination(connection(url), tmp_path)
    assert isinstance(dest, cls)
    assert dest.connection.name == "warehouse"
    assert dest.root == tmp_path


def test_file_paths_are_relative_to_the_root(tmp_path: Path) -> None:
    sqlite = open_destination(connection("sqlite:///data/out.db"), tmp_path)
    duck = open_destination(connection("duckdb:///data/out.duckdb"), tmp_path)
    assert isinstance(sqlite, SQLiteDestination) and isinstance(duck, DuckDBDestination)
    assert sqlite.path == tmp_path / "data" / "out.db"
    assert duck.path == tmp_path / "data" / "out.duckdb"


def test_unknown_scheme_names_the_connection_and_suggests(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        open_destination(connection("duckdbb:///x.duckdb"), tmp_path)
    message = str(caught.value)
    assert message.startswith("sluice.yaml:12: connection 'warehouse' as a destination cannot use duckdbb:// URLs")
    assert "Supported: postgresql://, postgres://, sqlite://, duckdb://" in message
    assert "Did you mean 'duckdb'?" in message


def test_a_source_only_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"connection 'warehouse' as a destination cannot use mysql:// URLs"):
        open_destination(connection("mysql://root@127.0.0.1/db"), tmp_path)
