"""The built-in destinations, chosen by the connection's URL scheme (imports no driver)."""

from __future__ import annotations

from sluice.destinations.warehouse_options import PostgresDestinationSpec
from sluice.plugins.base import Plugin
from sluice.project.model import DestinationSpec

PLUGINS: list[Plugin] = [
    Plugin(
        "destination",
        "postgresql",
        PostgresDestinationSpec,
        "sluice.destinations.postgres:PostgresDestination",
        "PostgreSQL tables, loaded with binary COPY (ADBC); append, replace or merge; date-range partitions, keys, indexes.",
        schemes=("postgresql", "postgres"),
        extra="postgres",
        modules=("adbc_driver_postgresql", "adbc_driver_manager", "psycopg"),
    ),
    Plugin(
        "destination",
        "sqlite",
        DestinationSpec,
        "sluice.destinations.sqlite:SQLiteDestination",
        "SQLite tables in a sqlite:/// file; append, replace or merge.",
        schemes=("sqlite",),
    ),
    Plugin(
        "destination",
        "duckdb",
        DestinationSpec,
        "sluice.destinations.duckdb:DuckDBDestination",
        "DuckDB tables in a duckdb:/// file; append, replace or merge.",
        schemes=("duckdb",),
    ),
]
