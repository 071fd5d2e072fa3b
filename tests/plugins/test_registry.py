"""The plugin registry: lookups, clashes, lazy drivers and missing extras."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sluice.plugins import MissingExtra, Plugin, PluginError, Registry, Settings, registry


class NoOptions(Settings):
    pass


def plugin(name: str, *, kind: str = "source", schemes: tuple[str, ...] = (), **extra: object) -> Plugin:
    return Plugin(kind, name, NoOptions, "sluice.errors:SluiceError", f"{name} plugin", schemes=schemes, **extra)  # type: ignore[arg-type]


def test_lookup_by_name_and_by_scheme() -> None:
    found = Registry([plugin("csv"), plugin("pg", kind="destination", schemes=("postgresql", "postgres"))])
    assert found.get("source", "csv").name == "csv"
    assert found.for_scheme("destination", "POSTGRES").name == "pg"
    assert found.names("source") == ["csv"] and found.schemes("destination") == ["postgresql", "postgres"]


def test_unknown_names_and_schemes_suggest_the_closest() -> None:
    found = Registry([plugin("parquet"), plugin("pg", kind="destination", schemes=("postgresql",))])
    with pytest.raises(PluginError, match=r"unknown source 'parqet'. Did you mean 'parquet'\? Known: parquet"):
        found.get("source", "parqet")
    with pytest.raises(PluginError, match=r"cannot use postgresq:// URLs. Did you mean 'postgresql'\? Supported: postgresql://"):
        found.for_scheme("destination", "postgresq")


def test_two_plugins_may_not_share_a_name_or_a_scheme() -> None:
    with pytest.raises(PluginError, match="two source plugins are named 'csv': from sluice and from other"):
        Registry([plugin("csv"), plugin("csv", package="other")])
    with pytest.raises(PluginError, match="both claim the URL scheme s3://"):
        Registry([plugin("a", kind="lake", schemes=("s3",)), plugin("b", kind="lake", schemes=("s3",))])
    with pytest.raises(PluginError, match="unknown kind 'sink'"):
        Registry([plugin("x", kind="sink")])


def test_a_missing_driver_names_the_extra_to_install() -> None:
    missing = plugin("warehouse", modules=("sluice_no_such_driver",), extra="warehouse")
    assert missing.missing_modules() == ["sluice_no_such_driver"]
    with pytest.raises(MissingExtra) as caught:
        missing.load()
    assert str(caught.value) == (
        "the source 'warehouse' plugin needs sluice_no_such_driver, which is not installed: run pip install 'sluice[warehouse]'"
    )
    assert "\n" not in str(caught.value)


def test_a_target_that_does_not_exist_is_a_plugin_error() -> None:
    broken = Plugin("source", "broken", NoOptions, "sluice.errors:NoSuchThing", "broken")
    with pytest.raises(PluginError, match=r"sluice\.errors has no 'NoSuchThing'"):
        broken.load()


def test_every_kind_of_the_seam_has_its_built_in_plugins() -> None:
    names = {kind: registry().names(kind) for kind in ("source", "destination", "lake", "engine", "bus", "state")}
    assert names == {
        "source": ["csv", "json", "jsonl", "parquet", "faker", "rest", "kafka", "postgresql", "mysql", "sqlite", "duckdb"],
        "destination": ["postgresql", "sqlite", "duckdb"],
        "lake": ["local", "s3"],
        "engine": ["sql", "python", "duckdb", "warehouse", "dbt", "spark"],
        "bus": ["embedded", "kafka"],
        "state": ["sqlite", "postgresql"],
    }


def test_listing_plugins_imports_no_driver() -> None:
    code = (
        "import sys\n"
        "from sluice.plugins import registry\n"
        "assert registry().all()\n"
        "drivers = ['psycopg', 'pymysql', 'confluent_kafka', 'adbc_driver_postgresql', 'faker']\n"
        "print(','.join(m for m in drivers if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
