"""The ``syncs:`` section of ``sluice.yaml``: what to keep in sync, and how.

::

    connections:
      hr: mysql://sluice:sluice@127.0.0.1:23306/hr
      warehouse: postgresql://postgres@127.0.0.1:25432/postgres
    syncs:
      - name: employees
        source: hr                  # a connection: capture reads it
        target: warehouse           # a connection: apply writes it
        tables: [employes, "hr.dept_*"]   # names or glob patterns, optionally namespace-qualified
        exclude: ["*_tmp"]
        rename: {employes: staff}   # source table -> target table
        columns:
          employes: {drop: [ssn], mask: [email]}
        snapshot: initial           # initial | never | initial_only | when_needed
        direction: one-way          # one-way | both
        conflicts: newer-wins       # newer-wins | source-wins | target-wins (direction: both)
        partitions: 1               # > 1 (Kafka bus): apply runs one table's keys in parallel

Each entry is checked by :class:`SyncSettings` with file and line, like the rest of the file.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from sluice.plugins.base import Settings

SnapshotMode = Literal["initial", "never", "initial_only", "when_needed"]
Direction = Literal["one-way", "both"]
ConflictPolicy = Literal["newer-wins", "source-wins", "target-wins"]
NoKeyPolicy = Literal["refuse", "insert-only", "full-row"]
DropColumnPolicy = Literal["drop", "keep"]


class ColumnRules(Settings):
    """``columns: {employes: {drop: [ssn], mask: [email]}}``."""

    drop: Annotated[list[str], Meta(description="Columns not copied to the target.")] = msgspec.field(default_factory=list)
    mask: Annotated[list[str], Meta(description="Columns copied as the hex SHA-256 of their text (pseudonymised).")] = (
        msgspec.field(default_factory=list)
    )


class SyncSettings(Settings):
    """One entry of ``syncs:``."""

    name: Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_-]{0,62}$", description="Unique name of the sync (topics, status).")]
    source: Annotated[str, Meta(min_length=1, description="Connection capture reads (mysql:// or postgresql://).")]
    target: Annotated[str, Meta(min_length=1, description="Connection apply writes (postgresql:// or mysql://).")]
    tables: Annotated[
        list[str], Meta(min_length=1, description="Tables by name or glob pattern (`db.*`, `dept_*`); namespace optional.")
    ]
    exclude: Annotated[list[str], Meta(description="Names or patterns left out of `tables`.")] = msgspec.field(
        default_factory=list
    )
    rename: Annotated[dict[str, str], Meta(description="Source table -> target table name.")] = msgspec.field(
        default_factory=dict
    )
    columns: Annotated[dict[str, ColumnRules], Meta(description="Per source table: columns to drop or mask.")] = msgspec.field(
        default_factory=dict
    )
    target_namespace: Annotated[
        str | None, Meta(description="Target schema (PostgreSQL) or database (MySQL); default: the target URL's.")
    ] = None
    snapshot: Annotated[
        SnapshotMode,
        Meta(
            description="initial: snapshot then stream; never: stream only; initial_only: snapshot, apply it, then exit; "
            "when_needed: snapshot when no position is stored or it was purged."
        ),
    ] = "initial"
    direction: Annotated[Direction, Meta(description="one-way, or both: each side captures and applies the other's changes.")] = (
        "one-way"
    )
    conflicts: Annotated[ConflictPolicy, Meta(description="Who wins when a key changed on both sides (direction: both).")] = (
        "newer-wins"
    )
    no_key: Annotated[
        NoKeyPolicy,
        Meta(
            description="Tables without a primary key: refuse (error before start), insert-only (inserts applied, "
            "updates and deletes dead-lettered), full-row (the whole row is the key)."
        ),
    ] = "refuse"
    drop_columns: Annotated[
        DropColumnPolicy, Meta(description="A column dropped at the source: drop it in the target too, or keep it (NULL).")
    ] = "drop"
    chunk_rows: Annotated[int, Meta(ge=1, le=10_000_000, description="Rows per snapshot chunk (a resume point).")] = 50_000
    batch_rows: Annotated[int, Meta(ge=1, le=10_000_000, description="Most row changes per apply transaction.")] = 20_000
    partitions: Annotated[
        int,
        Meta(
            ge=1,
            le=256,
            description="Partitions of each table's topic (Kafka only): apply runs the keys of one table in parallel, "
            "each key in order (docs/cdc/partitions.md).",
        ),
    ] = 1
    heartbeat_s: Annotated[
        float, Meta(gt=0, description="Seconds between heartbeats while the source is idle (moves positions and slots).")
    ] = 10.0
    capture: Annotated[
        dict[str, Any], Meta(description="Options of the source's capture plugin (`sluice plugins --kind capture`).")
    ] = msgspec.field(default_factory=dict)
    apply: Annotated[
        dict[str, Any], Meta(description="Options of the target's apply plugin (`sluice plugins --kind apply`).")
    ] = msgspec.field(default_factory=dict)


def partitions_problem(settings: SyncSettings, partitioned: bool) -> str:
    """The one-line error for ``partitions: N`` (> 1) on a bus without partitions, or ``""``."""
    if settings.partitions <= 1 or partitioned:
        return ""
    return (
        f"sync '{settings.name}': partitions: {settings.partitions} needs a Kafka bus (the embedded bus has one partition "
        "per topic, so one table's changes apply in one order); set bus: kafka://HOST:PORT or --bus, or remove partitions"
    )


def direction_problems(settings: SyncSettings, given: set[str]) -> list[tuple[str, str]]:
    """The one-line errors of options that contradict the sync's ``direction``, each with the key it is at:
    ``columns:`` rules (drop or mask) on a both-ways sync, which could not write those columns back; ``conflicts:``
    written on a one-way sync, where no key changes on both sides (``given``: the keys the file wrote)."""
    problems = []
    if settings.direction == "both":
        ruled = [table for table, rules in settings.columns.items() if rules.drop or rules.mask]
        if ruled:
            problems.append(
                (
                    f"sync '{settings.name}': columns: drops or masks columns of {', '.join(ruled)}, which a both-ways sync "
                    "cannot write back; remove those rules or use direction: one-way",
                    "columns",
                )
            )
    elif "conflicts" in given:
        problems.append(
            (
                f"sync '{settings.name}': conflicts: {settings.conflicts} applies to direction: both only (a one-way sync "
                "has no conflicts); remove it or set direction: both",
                "conflicts",
            )
        )
    return problems
