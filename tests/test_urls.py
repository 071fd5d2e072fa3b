"""Connection URL parsing: schemes, database files, libpq URLs."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

from sluice import urls
from sluice.errors import ConfigError
from sluice.urls import connection_scheme, database_file, libpq_url, sqlite_path, url_scheme

ROOT = Path("/project")


def test_the_module_examples_hold() -> None:
    result = doctest.testmod(urls)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///data/x.db", ROOT / "data/x.db"),
        ("sqlite:///x.db", ROOT / "x.db"),
        ("sqlite:////var/x.db", Path("/var/x.db")),
        ("sqlite:///x.db?timeout=1", ROOT / "x.db"),
        ("sqlite:////var/bus.db?retention_days=3&x=1", Path("/var/bus.db")),
        ("SQLite:///x.db", ROOT / "x.db"),
        ("duckdb:///w.duckdb", ROOT / "w.duckdb"),
        ("duckdb:////tmp/w.duckdb", Path("/tmp/w.duckdb")),
    ],
)
def test_sqlite_path_relative_to_the_root_with_three_slashes_absolute_with_four(url: str, path: Path) -> None:
    assert sqlite_path(url, ROOT) == path


def test_sqlite_path_without_a_root_is_relative_to_the_current_folder() -> None:
    assert sqlite_path("sqlite:///x.db") == Path.cwd() / "x.db"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///:memory:", r"'sqlite:///:memory:' is an in-memory database; name a database file"),
        ("sqlite://", r"'sqlite://' is an in-memory database"),
        ("duckdb:///:memory:?threads=2", r"in-memory database; name a database file \(use duckdb:///relative"),
        ("sqlite://x.db", r"'sqlite://x.db' does not say where the file is; use sqlite:///relative/file.db"),
        ("sqlite:x.db", r"does not say where the file is"),
        ("postgresql://u@h/db", r"not a database file URL: 'postgresql://u@h/db'; use sqlite:///relative"),
        ("sqlite", r"not a database file URL: 'sqlite'"),
        ("/tmp/x.db", r"not a database file URL"),
    ],
)
def test_sqlite_path_refuses_what_names_no_file(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        sqlite_path(url, ROOT)


def test_database_file_says_none_for_in_memory_databases() -> None:
    for url in ("sqlite://", "sqlite:///:memory:", "duckdb://", "duckdb:///:memory:", "sqlite:///:memory:?x=1"):
        assert database_file(url, ROOT) is None, url
    assert database_file("sqlite://x.db", ROOT) == ROOT / "x.db"  # destinations take two slashes as relative


@pytest.mark.parametrize(
    ("url", "libpq"),
    [
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgres://u@h/db", "postgresql://u@h/db"),
        ("postgresql+psycopg://u@h:5/db", "postgresql://u@h:5/db"),
        ("POSTGRES://u:p%40ss@h/db", "postgresql://u:p%40ss@h/db"),
        (
            "postgres://u@h/db?sslmode=require&application_name=sluice",
            "postgresql://u@h/db?sslmode=require&application_name=sluice",
        ),
        ("postgresql:///db?host=/run/postgresql", "postgresql:///db?host=/run/postgresql"),
    ],
)
def test_libpq_url_normalises_the_scheme_and_keeps_the_rest(url: str, libpq: str) -> None:
    assert libpq_url(url) == libpq


@pytest.mark.parametrize("url", ["mysql://u@h/db", "sqlite:///x.db", "host=h dbname=db password=secret", "postgresql:db"])
def test_libpq_url_refuses_other_urls_without_quoting_them(url: str) -> None:
    with pytest.raises(ConfigError, match=r"a PostgreSQL URL looks like postgresql://") as caught:
        libpq_url(url)
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "written", "normalised"),
    [
        ("postgresql://u@h/db", "postgresql", "postgresql"),
        ("postgres://u@h/db", "postgres", "postgresql"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg", "postgresql"),
        ("MariaDB://u@h/db", "mariadb", "mysql"),
        ("mysql+pymysql://u@h/db", "mysql+pymysql", "mysql"),
        ("sqlite:///x.db", "sqlite", "sqlite"),
        ("duckdb://", "duckdb", "duckdb"),
        ("kafka://127.0.0.1:29092?partitions=2", "kafka", "kafka"),
    ],
)
def test_schemes_as_written_and_normalised(url: str, written: str, normalised: str) -> None:
    assert url_scheme(url) == written
    assert connection_scheme(url) == normalised
