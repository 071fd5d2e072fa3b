"""The built-in sources and their typed options (imports no driver: see :mod:`sluice.plugins`).

A project picks a source with ``type``: ``csv``, ``json``, ``jsonl``, ``parquet``, ``faker``, ``rest``, ``kafka`` or ``sql``.
``type: sql`` reads a table or query over a named connection; the source plugin that serves the
connection's URL scheme (``postgresql``, ``mysql``, ``sqlite``, ``duckdb``) does the reading.
"""

from __future__ import annotations

import codecs
from typing import Annotated, ClassVar, Literal

from msgspec import Meta

from sluice.connectors.rest_options import RestOptions
from sluice.plugins.base import Plugin, Settings
from sluice.streaming.options import RecordSettings

SQL_KIND = "sql"
DEFAULT_BATCH_ROWS = 50_000
DEFAULT_SEED = 42
DEFAULT_BLOCK_BYTES = 4 << 20

Path_ = Annotated[str, Meta(min_length=1, description="File path; relative paths start at the project folder.")]
ColumnTypes = Annotated[
    dict[str, str],
    Meta(description="Arrow types by column name (string, int64, double, bool, date32, timestamp[us]...), instead of guessing."),
]
BlockSize = Annotated[int, Meta(ge=1024, description="Bytes read per block; types are guessed from the first block.")]
BatchSize = Annotated[int, Meta(ge=1, description="Rows per Arrow record batch.")]


class FileOptions(Settings):
    """What every file source takes: the file's path."""

    path: Path_


class CsvOptions(FileOptions):
    """A CSV file, streamed in blocks (pyarrow's CSV reader)."""

    delimiter: Annotated[str, Meta(min_length=1, max_length=1, description="Field separator.")] = ","
    header: Annotated[bool, Meta(description="The first row names the columns.")] = True
    quote_char: Annotated[str, Meta(max_length=1, description='Quote character; "" turns quoting off.')] = '"'
    encoding: Annotated[str, Meta(description="Text encoding (utf8, latin1...).")] = "utf8"
    skip_rows: Annotated[int, Meta(ge=0, description="Rows to skip before the header.")] = 0
    null_values: Annotated[
        list[str] | None,
        Meta(description="Strings read as NULL in every column; quoted values are never NULL."),
    ] = None
    empty_as_null: Annotated[
        bool,
        Meta(
            description='An empty unquoted field (a,,b) is NULL in every column; a quoted one ("") stays an empty string. '
            "false: pyarrow's defaults: empty and NULL-like values (NA, N/A, null, NaN...) are NULL in numbers, "
            "dates and booleans, text is kept as written."
        ),
    ] = True
    newlines_in_values: Annotated[
        bool,
        Meta(description="Quoted fields may hold line breaks (RFC 4180); false reads a file that has none about 0-10% faster."),
    ] = True
    column_names: Annotated[list[str] | None, Meta(description="Column names to use (replaces the header's).")] = None
    column_types: ColumnTypes | None = None
    block_size: BlockSize = DEFAULT_BLOCK_BYTES

    def __post_init__(self) -> None:
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(f"encoding: unknown text encoding {self.encoding!r} (utf8, latin1, cp1252, utf-16...)") from None
        check_column_types(self.column_types)


class JsonOptions(FileOptions):
    """A JSON file: an array of objects (read whole) or one object per line (streamed in blocks)."""

    column_types: ColumnTypes | None = None
    block_size: BlockSize = DEFAULT_BLOCK_BYTES

    def __post_init__(self) -> None:
        check_column_types(self.column_types)


def check_column_types(column_types: dict[str, str] | None) -> None:
    """Raise ValueError naming the column whose type name is not an Arrow type (checked before anything runs)."""
    from sluice.connectors.batching import arrow_type
    from sluice.errors import TerminalError

    for column, name in (column_types or {}).items():
        try:
            arrow_type(name)
        except TerminalError as exc:
            raise ValueError(f"column_types: column {column!r}: {exc}") from None


class ParquetOptions(FileOptions):
    """A Parquet file, streamed row group by row group."""

    batch_size: BatchSize = DEFAULT_BATCH_ROWS
    columns: Annotated[list[str] | None, Meta(description="Read only these columns.")] = None


class FakerOptions(Settings):
    """Seeded fake data: the same options always produce the same rows."""

    schema: Annotated[Literal["users", "transactions", "products"], Meta(description="Which table to generate.")]
    rows: Annotated[int, Meta(ge=0, le=10**12, description="Rows to generate.")] = 1000
    seed: Annotated[int, Meta(ge=0, le=2**63 - 1, description="Random seed.")] = DEFAULT_SEED
    users: Annotated[int, Meta(ge=1, description="transactions: user ids range over 1..users.")] = 1000
    products: Annotated[int, Meta(ge=1, description="transactions: product ids range over 1..products.")] = 100


class SqlSourceOptions(Settings):
    """A table or the result of a query over one of the project's connections."""

    connection: Annotated[str, Meta(min_length=1, description="Name of one of the project's connections.")]
    table: Annotated[str | None, Meta(description="Table to read, optionally schema-qualified (schema.table).")] = None
    query: Annotated[str | None, Meta(description="SQL query to read instead of a table.")] = None
    batch_size: BatchSize = DEFAULT_BATCH_ROWS

    def __post_init__(self) -> None:
        if (self.table is None) == (self.query is None):
            raise ValueError("give either 'table' or 'query' (exactly one of them)")


class KafkaSourceOptions(RecordSettings, kw_only=True):
    """A Kafka topic's records from the consumer group's committed offsets to the high watermarks seen at the start;
    offsets committed once the object's output is durable."""

    connection_schemes: ClassVar[tuple[str, ...]] = ("kafka",)
    placeholder: ClassVar[dict[str, str]] = {"connection": "events", "topic": "events"}
    """Stands for the required options while each other one's own checks run (``convert_options``)."""
    connection: Annotated[
        str, Meta(min_length=1, description="Name of one of the project's connections, a kafka://host:port URL.")
    ]
    topic: Annotated[str, Meta(pattern=r"^[A-Za-z0-9._-]{1,249}$", description="The topic to read.")]
    topics: Annotated[
        tuple[Annotated[str, Meta(pattern=r"^[A-Za-z0-9._-]{1,249}$")], ...],
        Meta(description="Streaming objects only: more topics read with 'topic' into one output (_topic tells them apart)."),
    ] = ()
    group: (
        Annotated[
            str,
            Meta(
                min_length=1,
                description=(
                    "Consumer group whose committed offsets say where to start (default sluice.<project>.<object id>); "
                    "'sluice state reset' deletes it."
                ),
            ),
        ]
        | None
    ) = None
    start: Annotated[
        Literal["earliest", "latest"], Meta(description="Where a group without committed offsets starts: earliest or latest.")
    ] = "earliest"
    batch_size: Annotated[int, Meta(ge=1, le=1_000_000, description="Records per Arrow record batch (bounds memory).")] = (
        DEFAULT_BATCH_ROWS
    )


def _sql(name: str, schemes: tuple[str, ...], target: str, summary: str, extra: str | None, modules: tuple[str, ...]) -> Plugin:
    return Plugin("source", name, SqlSourceOptions, target, summary, schemes=schemes, extra=extra, modules=modules)


PLUGINS: list[Plugin] = [
    Plugin("source", "csv", CsvOptions, "sluice.connectors.files:CsvSource", "CSV files, streamed in blocks."),
    Plugin("source", "json", JsonOptions, "sluice.connectors.files:JsonSource", "A JSON array of objects, or JSON Lines."),
    Plugin("source", "jsonl", JsonOptions, "sluice.connectors.files:JsonLinesSource", "JSON Lines, streamed in blocks."),
    Plugin("source", "parquet", ParquetOptions, "sluice.connectors.files:ParquetSource", "Parquet files, by row group."),
    Plugin(
        "source",
        "faker",
        FakerOptions,
        "sluice.connectors.faker_source:FakerSource",
        "Seeded fake users, transactions, products.",
    ),
    Plugin(
        "source",
        "rest",
        RestOptions,
        "sluice.connectors.rest:RestSource",
        "JSON APIs over HTTP(S): paginated, authenticated, retried, rate-limited, incremental (httpx).",
    ),
    Plugin(
        "source",
        "kafka",
        KafkaSourceOptions,
        "sluice.connectors.kafka_source:KafkaSource",
        "A Kafka topic's new records (JSON), offsets committed once the output is durable (confluent-kafka).",
        extra="kafka",
        modules=("confluent_kafka",),
    ),
    _sql(
        "postgresql",
        ("postgresql", "postgres"),
        "sluice.connectors.postgres:PostgresSource",
        "type: sql over a postgresql:// connection (ADBC, Arrow-native).",
        "postgres",
        ("adbc_driver_postgresql", "adbc_driver_manager", "psycopg"),
    ),
    _sql(
        "mysql",
        ("mysql", "mariadb"),
        "sluice.connectors.mysql:MysqlSource",
        "type: sql over a mysql:// or mariadb:// connection (PyMySQL, streamed).",
        "mysql",
        ("pymysql",),
    ),
    _sql("sqlite", ("sqlite",), "sluice.connectors.sqlite:SqliteSource", "type: sql over a sqlite:/// file.", None, ()),
    _sql("duckdb", ("duckdb",), "sluice.connectors.duckdb_source:DuckdbSource", "type: sql over a duckdb:/// file.", None, ()),
]
