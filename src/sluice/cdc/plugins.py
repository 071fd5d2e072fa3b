"""The built-in capture and apply plugins, chosen by the URL scheme of a sync's source and target connections."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from sluice.plugins.base import Plugin, Settings

_NAME = r"^[a-z_][a-z0-9_]{0,62}$"


class MysqlCaptureOptions(Settings):
    """``capture: {server_id: 4242, position_mode: gtid}`` for a MySQL/MariaDB source."""

    server_id: Annotated[
        int, Meta(ge=0, le=4294967295, description="Replica server id capture registers with (0: derived from the sync name).")
    ] = 0
    position_mode: Annotated[
        Literal["file", "gtid"],
        Meta(
            description="Resume by binlog file and offset, or by GTID (MariaDB only, one replication domain; "
            "positions survive rotated, flushed and purged binlog files). Changing it needs --resnapshot."
        ),
    ] = "file"


class PostgresCaptureOptions(Settings):
    """``capture: {slot: sluice_employees, publication: sluice_employees}`` for a PostgreSQL source."""

    slot: Annotated[
        Annotated[str, Meta(pattern=_NAME)] | None,
        Meta(description="Logical replication slot to create (default sluice_<sync>_<side>)."),
    ] = None
    publication: Annotated[
        Annotated[str, Meta(pattern=_NAME)] | None,
        Meta(description="Publication to create for the synced tables (default: the slot name)."),
    ] = None
    decoder: Annotated[Literal["wal2json"], Meta(description="Logical decoding output plugin.")] = "wal2json"
    replica_identity_full: Annotated[
        bool,
        Meta(description="Set REPLICA IDENTITY FULL so updates carry the whole before image (needed both ways)."),
    ] = False


class ApplyOptions(Settings):
    """``apply: {namespace: sluice_cdc}`` for a PostgreSQL or MySQL/MariaDB target."""

    namespace: Annotated[
        str,
        Meta(pattern=_NAME, description="Schema or database of Sluice's positions and dead-letter tables."),
    ] = "sluice_cdc"
    create_tables: Annotated[bool, Meta(description="Create a missing target table from the source's schema.")] = True


PLUGINS: list[Plugin] = [
    Plugin(
        "capture",
        "mysql",
        MysqlCaptureOptions,
        "sluice.cdc.mysql_capture:MysqlCapture",
        "MySQL/MariaDB row-based binlog (full row metadata), snapshot in key-ordered chunks.",
        schemes=("mysql", "mariadb"),
        extra="mysql",
        modules=("pymysql",),
    ),
    Plugin(
        "capture",
        "postgresql",
        PostgresCaptureOptions,
        "sluice.cdc.pg_capture:PostgresCapture",
        "PostgreSQL logical decoding (wal2json) through a replication slot and publication Sluice creates.",
        schemes=("postgresql", "postgres"),
        extra="postgres",
        modules=("psycopg",),
    ),
    Plugin(
        "apply",
        "postgresql",
        ApplyOptions,
        "sluice.cdc.pg_apply:PostgresApply",
        "PostgreSQL: COPY into a staging table and one merge per batch, position stored in the same transaction.",
        schemes=("postgresql", "postgres"),
        extra="postgres",
        modules=("psycopg",),
    ),
    Plugin(
        "apply",
        "mysql",
        ApplyOptions,
        "sluice.cdc.mysql_apply:MysqlApply",
        "MySQL/MariaDB: batched multi-row upserts and deletes, position stored in the same transaction.",
        schemes=("mysql", "mariadb"),
        extra="mysql",
        modules=("pymysql",),
    ),
]
