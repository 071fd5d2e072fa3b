"""The project's ``spark:`` section (docs/engines.md), apart from the engine plugins so that the project
model can hold it without importing them."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from sluice.plugins.base import Settings


class SparkSettings(Settings):
    """The project's ``spark:`` section: where Spark objects run (one session per worker process)."""

    master: Annotated[
        str,
        Meta(
            min_length=1,
            description="Spark master URL: local[*] (default: this machine, every core), local[2], spark://host:7077, "
            "yarn, k8s://... The lake must be reachable from the executors at the same path.",
        ),
    ] = "local[*]"
    app_name: Annotated[str, Meta(min_length=1, description="Application name shown by Spark's UI and cluster manager.")] = (
        "sluice"
    )
    conf: Annotated[
        dict[str, str | int | float | bool],
        Meta(
            description="Spark configuration (spark.executor.memory: 4g, spark.sql.shuffle.partitions: 64...), applied "
            "over Sluice's defaults when the session starts (docs/engines.md)."
        ),
    ] = msgspec.field(default_factory=dict)
