"""The built-in buses, chosen by URL scheme; options come from the URL's query string."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from sluice.plugins.base import Plugin, Settings

RetentionDays = Annotated[float, Meta(ge=0, description="Days messages are kept (0 keeps everything).")]


class EmbeddedBusOptions(Settings):
    """``sqlite:///.sluice/bus.db?retention_days=30``."""

    retention_days: RetentionDays = 7.0


class KafkaBusOptions(Settings):
    """``kafka://host:9092[,host:9092...]?partitions=12&retention_days=3&namespace=team-a``."""

    partitions: Annotated[int, Meta(ge=1, description="Partitions of each stage's work topic.")] = 6
    retention_days: RetentionDays = 7.0
    namespace: Annotated[
        str,
        Meta(
            pattern=r"^[A-Za-z0-9._-]{0,100}$",
            description="Prefix of the Kafka names of topics and groups (several projects per cluster).",
        ),
    ] = ""


PLUGINS: list[Plugin] = [
    Plugin(
        "bus",
        "embedded",
        EmbeddedBusOptions,
        "sluice.bus.registry:open_embedded",
        "A durable SQLite log that several processes on one machine share.",
        schemes=("sqlite",),
    ),
    Plugin(
        "bus",
        "kafka",
        KafkaBusOptions,
        "sluice.bus.registry:open_kafka",
        "Kafka (confluent-kafka): per-stage partitioned work topics, consumer groups, many machines.",
        schemes=("kafka",),
        extra="kafka",
        modules=("confluent_kafka",),
    ),
]
