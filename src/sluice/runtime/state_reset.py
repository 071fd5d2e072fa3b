"""``sluice state reset``: forget where objects are, so that their next run reads from the start (cli/state.py prints).

Where an object is depends on its source:

- an incremental REST source, and a batch Kafka source's inferred schema: a cursor in the state store
  (``source_cursors``), forgotten;
- a batch Kafka source: its consumer group's committed offsets, which the group's deletion forgets
  (:mod:`sluice.connectors.kafka_groups`, which says why deleted rather than moved to the earliest offsets); its next
  run reads from ``start`` and replaces the object's lake output, as its first run did;
- a streaming object (``streaming:``): the offsets committed in the lake with the files they cover (exactly once),
  which a reset does not touch. Forgetting only the consumer group would change nothing (the group holds a copy, for
  lag tools) and forgetting the lake's offsets alone would append every record again to files that already hold them.
  Naming one with ``--object`` is refused with what to do (stop it and remove its output from the lake); ``--all``
  leaves them as they are and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sluice.connectors.kafka_groups import KafkaGroup, delete_groups, inspect_groups
from sluice.errors import ConfigError, SluiceError
from sluice.project.model import ObjectSpec, Project, layer_of
from sluice.project.yaml_tree import UnsetVariable
from sluice.runtime.execute import label
from sluice.state.base import StateStore


class StreamingReset(SluiceError):
    """``sluice state reset`` named a streaming object, whose position is in the lake."""


@dataclass(frozen=True, slots=True)
class StateReset:
    """What :func:`reset_state` forgot."""

    cursors: list[int]
    """The ids of the objects whose saved cursor was forgotten, ascending."""
    groups: list[KafkaGroup]
    """The consumer groups deleted, with the offsets each held (none: nothing had been committed)."""
    streaming: list[ObjectSpec]
    """The streaming objects ``--all`` left as they are."""


def reset_state(
    project: Project, store: StateStore, object_ids: Sequence[int] | None, unset: Sequence[UnsetVariable] = ()
) -> StateReset:
    """Forget the position of ``object_ids`` (None: every object of the project, streaming ones left as they are).

    The consumer groups are reset first, the state store last. The broker is the part that fails (unreachable, a
    group in use), and every group is checked (reachable, no member, no other topic's offsets) before any is
    deleted, so such a failure leaves everything as it was; the state store's reset is one local transaction. Each
    step can be done again: a group already deleted counts as reset, a cursor already forgotten is not there. A
    failure between the two (or between two groups) therefore leaves a reset that the same command finishes, and
    meanwhile a run reads the topic from ``start`` with the schema it had saved, as a reset object would. The other
    order could leave the cursors forgotten and the offsets kept: a run in between would read on from the offsets,
    as if nothing had been reset.

    ``unset``: the unset ``${VARIABLES}`` of connections that reading the project let pass; one in the connection of
    a Kafka object being reset is raised. Raises StreamingReset for a streaming object among ``object_ids``,
    GroupResetError (:mod:`sluice.connectors.kafka_groups`) when a group cannot be reset.
    """
    chosen = [project.objects[i] for i in object_ids] if object_ids is not None else list(project.objects.values())
    streaming = [obj for obj in chosen if obj.streaming is not None]
    if streaming and object_ids is not None:
        raise StreamingReset(streaming_remedy(project, streaming[0]))
    kafka = [obj for obj in chosen if obj.streaming is None and obj.source is not None and obj.source.kind == "kafka"]
    groups = inspect_groups([_group(project, obj, unset) for obj in kafka])
    delete_groups(groups)
    cursors = store.reset_source_cursors(project.name, None if object_ids is None else list(object_ids))
    return StateReset(cursors, groups, streaming)


def streaming_remedy(project: Project, obj: ObjectSpec) -> str:
    """Why ``sluice state reset`` leaves streaming object ``obj`` as it is, and how to read its topics again."""
    folder = f"{layer_of(project, obj)}/{obj.name}"
    spark = f" and _checkpoints/{folder}" if obj.engine == "spark" else ""
    return (
        f"{label(obj)} is a streaming object: its offsets are committed with its lake files, which 'sluice state reset' "
        f"does not touch; to read its topics again, stop it and remove its output from the lake (the folder "
        f"{folder}{spark}), or rename it"
    )


def _group(project: Project, obj: ObjectSpec, unset: Sequence[UnsetVariable]) -> KafkaGroup:
    """The consumer group of batch Kafka object ``obj``, as its source names it."""
    from sluice.connectors.base import SourceContext
    from sluice.connectors.kafka_source import KafkaSource
    from sluice.connectors.registry import open_source

    assert obj.source is not None
    connection = str(obj.source.get("connection"))
    for problem in unset:
        if problem.where == f"connections.{connection}" or problem.where.startswith(f"connections.{connection}."):
            message = f"{label(obj)}: its consumer group cannot be reset: {problem.message}"
            raise ConfigError(message, problem.source, problem.line)
    context = SourceContext(project.root, project.connections, label=label(obj), project=project.name, object_id=str(obj.id))
    source = open_source(obj.source, context)
    assert isinstance(source, KafkaSource)
    return KafkaGroup(label(obj), connection, source.bootstrap(), source.group(), source.options.topic, source.options.start)
