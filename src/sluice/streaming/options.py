"""The typed options of Kafka records (imports nothing but msgspec: see :mod:`sluice.plugins`): how values are
decoded, which metadata columns are added, where undecodable records go. :mod:`sluice.streaming.records` does
the decoding; the Kafka source and streaming objects take these options.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
from msgspec import Meta

from sluice.plugins.base import Settings

if TYPE_CHECKING:
    import pyarrow as pa

MetadataColumn = Literal["_key", "_headers", "_timestamp", "_partition", "_offset", "_topic"]
DEAD_LETTER_SUFFIX = ".dead-letter"


class RecordSettings(Settings):
    """How the values of a topic's records are decoded (part of the Kafka source's and streaming objects' options)."""

    format: Annotated[Literal["json"], Meta(description="Encoding of the record values: json (one JSON object per record).")] = (
        "json"
    )
    schema: Annotated[
        dict[str, str] | None,
        Meta(
            description="Declared columns and their Arrow types (string, int64, float64, bool, date32, timestamp[us], "
            "decimal(10,2)...), the names column_types takes; fields not declared are ignored. Without it the schema "
            "is inferred and kept stable across batches."
        ),
    ] = None
    columns: Annotated[
        list[MetadataColumn],
        Meta(description="Kafka metadata columns to add: _key, _headers, _timestamp, _partition, _offset, _topic."),
    ] = msgspec.field(default_factory=list)
    dead_letter: Annotated[
        str | bool,
        Meta(
            description="Topic that records which cannot be decoded go to, with the reason in their headers; true: "
            "<topic>.dead-letter; false: fail the read instead."
        ),
    ] = True

    def __post_init__(self) -> None:
        from sluice.connectors.plugins import check_column_types

        try:
            check_column_types(self.schema)
        except ValueError as exc:
            raise ValueError(str(exc).replace("column_types:", "schema:", 1)) from None
        if len(set(self.columns)) != len(self.columns):
            raise ValueError("columns: a metadata column is listed twice")
        if self.dead_letter == "":
            raise ValueError("dead_letter: give a topic name, true (<topic>.dead-letter) or false")
        clash = sorted(set(self.schema or ()) & set(self.columns))
        if clash:
            raise ValueError(f"schema: {clash[0]!r} is also a metadata column; rename it or drop it from columns")

    def dead_letter_topic(self, topic: str) -> str | None:
        """Where ``topic``'s undecodable records go; None when they fail the read (``dead_letter: false``)."""
        if self.dead_letter is False:
            return None
        return topic + DEAD_LETTER_SUFFIX if self.dead_letter is True else self.dead_letter

    def declared_schema(self) -> pa.Schema | None:
        """The declared value columns as an Arrow schema (metadata columns not included), or None."""
        import pyarrow as pa

        from sluice.connectors.batching import arrow_type

        if self.schema is None:
            return None
        return pa.schema([(name, arrow_type(type_name)) for name, type_name in self.schema.items()])
