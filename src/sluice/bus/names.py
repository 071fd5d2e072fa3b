"""The names of Sluice's topics and consumer groups: the one place they are defined.

Every module that publishes, consumes, samples lag or labels metrics takes its names from here, so a name
changed here changes everywhere (``docs/bus.md`` and ``docs/events.md`` describe them). Imports nothing.

>>> EVENTS_TOPIC, ready_topic("ingest"), DEAD_LETTER_TOPIC
('sluice.events', 'sluice.ready.ingest', 'sluice.dead-letters')
>>> work_group("ingest"), coordinator_group("r1")
('workers.ingest', 'coordinator.r1')
>>> is_run_group(coordinator_group("r1")), is_run_group(work_group("ingest"))
(True, False)
>>> is_ready_topic(ready_topic("ingest")), is_ready_topic(EVENTS_TOPIC)
(True, False)
"""

from __future__ import annotations

EVENTS_TOPIC = "sluice.events"
"""Every event of every run, in order: the audit log that ``sluice events`` and the UI read."""

DEAD_LETTER_TOPIC = "sluice.dead-letters"
"""Messages that could not be parsed where they were consumed, with the reason (see ``docs/events.md``)."""

READY_TOPIC_PREFIX = "sluice.ready."
"""The start of every stage's work queue: ``sluice.ready.<stage>``."""

WORK_GROUP_PREFIX = "workers."
"""The start of every stage's worker group: ``workers.<stage>``."""

COORDINATOR_GROUP_PREFIX = "coordinator."
"""The start of every run's coordinator group: ``coordinator.<run_id>``, one group per run."""

READER_GROUP = "sluice-reader"
"""The group id of the Kafka bus's reading handle (metadata, watermarks, replays); it never commits."""


def ready_topic(stage: str) -> str:
    """The work queue of one stage (``str`` → ``str``): ``ObjectReady`` events its workers consume."""
    return READY_TOPIC_PREFIX + stage


def is_ready_topic(topic: str) -> bool:
    """True when ``topic`` is a stage's work queue (a name :func:`ready_topic` makes)."""
    return topic.startswith(READY_TOPIC_PREFIX)


def work_group(stage: str) -> str:
    """The consumer group the workers of ``stage`` share on :func:`ready_topic` ``(stage)``."""
    return WORK_GROUP_PREFIX + stage


def coordinator_group(run_id: str) -> str:
    """The consumer group of the coordinator of run ``run_id`` on :data:`EVENTS_TOPIC`."""
    return COORDINATOR_GROUP_PREFIX + run_id


def is_run_group(group: str) -> bool:
    """True when ``group`` belongs to one run (a name :func:`coordinator_group` makes): such groups come and
    go with runs, so metrics label them all alike."""
    return group.startswith(COORDINATOR_GROUP_PREFIX)


ALERTS_GROUP = "alerts"
"""The consumer group of the alert service on :data:`EVENTS_TOPIC` (``sluice.alerts.service``)."""
