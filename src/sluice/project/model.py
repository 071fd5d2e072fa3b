"""The in-memory shape of a Sluice project: objects, stages, connections and settings.

These are plain frozen dataclasses with no I/O; :mod:`sluice.project.load` builds them from
``sluice.yaml`` or ``Objets.json`` and :mod:`sluice.project.validate` checks them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from sluice.urls import connection_scheme

WriteMode = Literal["append", "replace", "merge"]
WRITE_MODES: tuple[str, ...] = ("append", "replace", "merge")
FILE_SOURCE_KINDS: tuple[str, ...] = ("csv", "json", "jsonl", "parquet")
SOURCE_KINDS: tuple[str, ...] = (*FILE_SOURCE_KINDS, "sql", "faker")


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a definition came from, for error messages."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True, slots=True)
class StageSpec:
    """A processing stage: which object ids belong to it and how its workers behave."""

    name: str
    min_id: int | None
    max_id: int | None
    concurrency: int = 4
    layer: str = "raw"
    delay_s: float = 0.0

    def matches(self, object_id: int) -> bool:
        low_ok = self.min_id is None or object_id >= self.min_id
        high_ok = self.max_id is None or object_id <= self.max_id
        return low_ok and high_ok

    def describe_ids(self) -> str:
        if self.min_id is not None and self.max_id is None:
            return f"{self.min_id}+"
        if self.min_id is None and self.max_id is None:
            return "any id"
        return f"{self.min_id if self.min_id is not None else ''}-{self.max_id}"


DEFAULT_STAGES: tuple[StageSpec, ...] = (
    StageSpec("ingest", 1000, 1999, concurrency=4, layer="raw", delay_s=0.5),
    StageSpec("standardize", 2000, 2999, concurrency=4, layer="cleaned", delay_s=0.6),
    StageSpec("application", 3000, None, concurrency=4, layer="curated", delay_s=0.8),
)


@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    """A named database connection, by URL (``postgresql://``, ``mysql://``, ``sqlite:///``, ``duckdb:///``)."""

    name: str
    url: str
    origin: Origin

    @property
    def scheme(self) -> str:
        return connection_scheme(self.url)


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """What an extracting object reads: a file, a database table or query, or a Faker generator.

    ``options`` keeps the kind-specific settings (``path``, ``connection``, ``table``, ``query``,
    ``schema``, ``rows``, ``seed``...).
    """

    kind: str
    options: Mapping[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)


@dataclass(frozen=True, slots=True)
class DestinationSpec:
    """Where an object's result is published besides the lake."""

    connection: str
    table: str
    mode: WriteMode = "replace"
    key: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    """One data object: its identity, stage, parents and the work that produces it."""

    id: int
    name: str
    stage: str
    parents: tuple[int, ...]
    origin: Origin
    source: SourceSpec | None = None
    sql: str | None = None
    python: str | None = None
    destination: DestinationSpec | None = None
    lake: bool = True
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> Literal["source", "sql", "python", "noop"]:
        if self.source is not None:
            return "source"
        if self.sql is not None:
            return "sql"
        if self.python is not None:
            return "python"
        return "noop"

    def definition(self) -> dict[str, Any]:
        """A canonical, JSON-serialisable description used for fingerprints and the API."""
        return {
            "id": self.id,
            "name": self.name,
            "stage": self.stage,
            "parents": sorted(self.parents),
            "source": None if self.source is None else {"kind": self.source.kind, **self.source.options},
            "sql": self.sql,
            "python": self.python,
            "destination": None
            if self.destination is None
            else {
                "connection": self.destination.connection,
                "table": self.destination.table,
                "mode": self.destination.mode,
                "key": list(self.destination.key),
            },
            "lake": self.lake,
            "metadata": dict(self.metadata),
        }

    def definition_hash(self) -> str:
        text = msgspec.json.encode(self.definition(), order="sorted", enc_hook=str)
        return hashlib.blake2b(text, digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class RetrySpec:
    """How failed objects are retried: ``attempts`` in all, waiting ``backoff_s * 2**(n-1)`` between."""

    attempts: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2 = first retry)."""
        if attempt <= 1:
            return 0.0
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 2)))


@dataclass(frozen=True, slots=True)
class Project:
    """A loaded project. ``root`` is the folder the definition file lives in."""

    name: str
    root: Path
    source_file: Path
    objects: Mapping[int, ObjectSpec]
    connections: Mapping[str, ConnectionSpec]
    stages: tuple[StageSpec, ...] = DEFAULT_STAGES
    retry: RetrySpec = RetrySpec()
    bus_url: str = ""
    state_url: str = ""
    lake_path: str = ""
    lease_s: float = 30.0

    @property
    def work_dir(self) -> Path:
        """The ``.sluice`` folder beside the project that holds state, bus and lake by default."""
        return self.root / ".sluice"

    def stage(self, name: str) -> StageSpec:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(stage.name for stage in self.stages)

    def resolve_bus_url(self) -> str:
        return self.bus_url or f"sqlite:///{self.work_dir / 'bus.db'}"

    def resolve_state_url(self) -> str:
        return self.state_url or f"sqlite:///{self.work_dir / 'state.db'}"

    def resolve_lake_path(self) -> Path:
        if not self.lake_path:
            return self.work_dir / "lake"
        path = Path(self.lake_path)
        return path if path.is_absolute() else self.root / path


def stage_for_id(object_id: int, stages: tuple[StageSpec, ...]) -> StageSpec | None:
    """The first stage whose id range contains ``object_id``."""
    for stage in stages:
        if stage.matches(object_id):
            return stage
    return None
