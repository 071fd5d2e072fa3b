"""What a SQL model (a ``.sql`` file of the project's ``models/`` folder) is once read: docs/models.md.

Plain frozen data, no I/O: :mod:`sluice.project.models` builds it, the model engines
(:mod:`sluice.transforms.models`, :mod:`sluice.transforms.warehouse`) run it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Materialized = Literal["table", "view", "incremental"]
MATERIALIZATIONS: tuple[str, ...] = ("table", "view", "incremental")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model: its file, its SQL rendered for a full and an incremental run, its configuration and
    what each table it reads is bound to.

    - ``path``: the file relative to the project folder (``models/analytics/dim_users.sql``);
    - ``full_sql`` / ``incremental_sql``: dbt's ``is_incremental()`` false / true (None: no such block);
      ``{{ this }}`` is :data:`sluice.project.model_sql.THIS`;
    - ``dialect``: sqlglot's name of the dialect the SQL is written in;
    - ``engine``: the engine plugin that runs it (``duckdb``, ``warehouse``, ``spark``...);
    - ``connection`` / ``target``: for ``warehouse``, the PostgreSQL connection and the table it
      materialises (``analytics.dim_users``);
    - ``parents``: each table reference as written (lower case, ``name`` or ``schema.name``) -> parent
      object id; ``sources``: reference -> warehouse table of a declared source;
    - ``views``: ids of the DuckDB ``view`` models this one inlines, in dependency order;
    - ``config``: the merged configuration as plain values (hashed with the SQL for freshness).
    """

    path: str
    text: str
    full_sql: str
    incremental_sql: str | None
    dialect: str
    materialized: Materialized
    unique_key: tuple[str, ...]
    engine: str
    connection: str | None = None
    target: str | None = None
    parents: tuple[tuple[str, int], ...] = ()
    sources: tuple[tuple[str, str], ...] = ()
    views: tuple[int, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)

    def sql(self, incremental: bool) -> str:
        """The SQL of an incremental run (``incremental``, when the file has a block for it) or a full one."""
        return self.incremental_sql if incremental and self.incremental_sql is not None else self.full_sql

    def definition(self) -> dict[str, Any]:
        """The model's part of its object's definition: file, SQL as written and as rendered (``var()`` and
        ``env_var()`` change the latter), merged configuration."""
        return {
            "path": self.path,
            "text": self.text,
            "sql": [self.full_sql, self.incremental_sql],
            "config": dict(sorted(self.config.items())),
        }
