"""Forgetting where a batch Kafka source is, for ``sluice state reset``: its consumer group is deleted.

A batch Kafka source (:mod:`sluice.connectors.kafka_source`) keeps its position as its consumer group's committed
offsets, not in the state store, so resetting the object means resetting the group. The group is **deleted**
(``AdminClient.delete_consumer_groups``), not moved to the earliest offsets (``alter_consumer_group_offsets``):

- A group without committed offsets is what the object's first run had: the source starts where ``start`` says
  (``earliest``, or ``latest`` when the user chose it) and its read *replaces* the object's lake output
  (:meth:`KafkaSource.accumulates` is False). Offsets moved to the earliest ones are committed offsets: the next run
  would be a resumed read, adding every record of the topic to the previous output, so each record read before
  would be in it twice (once, merged on a key, only when the destination has one).
- Earliest offsets are those of the moment of the reset: retention may delete records before the next run (a
  committed offset below the low watermark is read from there, with a warning), and partitions added meanwhile
  have none. A deleted group has no offsets to go stale.
- Deleting is idempotent: a group already deleted answers ``GROUP_ID_NOT_FOUND``, which means done, so a reset
  that stopped half way is finished by running it again.

Deleting a group forgets the offsets of every topic it holds. The default group, ``sluice.<project>.<object id>``,
is the object's own; a ``group:`` that also holds other topics' offsets is refused rather than deleted (confluent-
kafka has no call deleting one topic's offsets of a group), naming those topics.

The broker refuses to delete a group that has active members (``NON_EMPTY_GROUP``), and so does
:func:`inspect_groups` before anything is deleted: the one-line error asks to stop what consumes with the group.
A batch source assigns itself its partitions without joining its group, so a run of the object in progress is
not a member the broker can see: stop the object's runs before resetting it (a run that finishes after the reset
commits its offsets again).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

from sluice.errors import SluiceError


class GroupResetError(SluiceError):
    """A consumer group cannot be reset: the broker is unreachable, the group is in use or shared."""


@dataclass(frozen=True, slots=True)
class KafkaGroup:
    """The consumer group of one batch Kafka object, and (after :func:`inspect_groups`) the offsets it holds."""

    label: str
    """The object, as messages name it: ``object 1001 (orders)``."""
    connection: str
    bootstrap: str
    group: str
    topic: str
    start: str
    """Where the group starts once reset: the source's ``start`` (``earliest`` or ``latest``)."""
    offsets: dict[int, int] = field(default_factory=dict)
    """The committed offset of each partition of ``topic`` (none: nothing committed, nothing to forget)."""


def inspect_groups(groups: Sequence[KafkaGroup]) -> list[KafkaGroup]:
    """``groups`` with the offsets each holds, asked of the broker before anything is deleted.

    Raises GroupResetError when a broker cannot be reached, a group has active members, or a group holds offsets of
    another topic than its object's.
    """
    return [_held(group) for group in groups]


def _held(group: KafkaGroup) -> KafkaGroup:
    """``group`` with the offsets it holds (see :func:`inspect_groups`)."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    admin = _admin(group.bootstrap)
    description = _ask(group, "describe", lambda: admin.describe_consumer_groups([group.group], **_timeout())[group.group])
    if description.members:
        members = ", ".join(f"{m.client_id} at {m.host.lstrip('/')}" for m in description.members)
        raise GroupResetError(
            f"{group.label}: consumer group {group.group!r} has {len(description.members)} active member(s) "
            f"({members}); stop the running object (or whatever consumes with that group) first, then reset again"
        )
    request = [ConsumerGroupTopicPartitions(group.group)]
    listed = _ask(group, "read", lambda: admin.list_consumer_group_offsets(request, **_timeout())[group.group])
    committed = [tp for tp in listed.topic_partitions if tp.offset >= 0]
    others = sorted({tp.topic for tp in committed if tp.topic != group.topic})
    if others:
        raise GroupResetError(
            f"{group.label}: consumer group {group.group!r} also holds offsets of topic(s) {', '.join(others)}, which "
            f"deleting it would forget; give the object a group of its own ('group:') or delete the group yourself"
        )
    return replace(group, offsets={tp.partition: tp.offset for tp in sorted(committed, key=lambda tp: tp.partition)})


def delete_groups(groups: Sequence[KafkaGroup]) -> None:
    """Delete ``groups`` (one request per broker); a group that does not exist (already deleted) is done.

    Raises GroupResetError naming the first group that could not be deleted, and those deleted before it.
    """
    from confluent_kafka import KafkaError, KafkaException

    by_bootstrap: dict[str, list[KafkaGroup]] = defaultdict(list)
    for group in groups:
        by_bootstrap[group.bootstrap].append(group)
    deleted: list[str] = []
    for same_broker in by_bootstrap.values():
        admin = _admin(same_broker[0].bootstrap)  # kept until the answers came: its futures die with it
        futures = admin.delete_consumer_groups([g.group for g in same_broker], **_timeout())
        for group in same_broker:
            try:
                _result(futures[group.group])
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.GROUP_ID_NOT_FOUND:
                    done = f" (groups {', '.join(deleted)} were deleted)" if deleted else ""
                    raise _failure(group, "delete", exc.args[0], f"the state store was left as it was{done}") from None
            deleted.append(repr(group.group))


def _admin(bootstrap: str) -> Any:
    """An admin client of the broker at ``bootstrap``, its log lines routed into Sluice's logging."""
    from confluent_kafka.admin import AdminClient

    from sluice.bus.kafka_common import quiet

    return AdminClient(quiet(bootstrap, {"bootstrap.servers": bootstrap}))


def _timeout() -> dict[str, float]:
    from sluice.bus.kafka_common import REQUEST_TIMEOUT_S

    return {"request_timeout": REQUEST_TIMEOUT_S}


def _ask(group: KafkaGroup, doing: str, request: Callable[[], Any]) -> Any:
    """The result of ``request()``'s future, asked again while the group's coordinator is not settled."""
    from confluent_kafka import KafkaException

    from sluice.bus.kafka_common import asking_again

    try:
        return asking_again(lambda: _result(request()))
    except KafkaException as exc:
        raise _failure(group, doing, exc.args[0], "nothing was reset") from None


def _result(future: Future[Any]) -> Any:
    """``future``'s result, waited for a little longer than the request may take; a wait past that raises librdkafka's
    ``_TIMED_OUT`` as a ``KafkaException``, like a request that timed out."""
    from confluent_kafka import KafkaError, KafkaException

    from sluice.bus.kafka_common import REQUEST_TIMEOUT_S

    try:
        return future.result(timeout=REQUEST_TIMEOUT_S + 5)
    except TimeoutError:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "no answer from the broker")) from None


def _failure(group: KafkaGroup, doing: str, error: Any, left: str) -> GroupResetError:
    """The one-line error for a librdkafka ``error`` while doing something to ``group``; ``left``: what stays as it was."""
    from confluent_kafka import KafkaError

    if error.code() in (KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE):
        return GroupResetError(
            f"{group.label}: cannot reach Kafka at {group.bootstrap} to reset consumer group {group.group!r} "
            f"({error.str()}); {left}: start the broker or fix connection {group.connection!r}, then reset again"
        )
    if error.code() == KafkaError.NON_EMPTY_GROUP:
        return GroupResetError(
            f"{group.label}: consumer group {group.group!r} has active members; {left}: stop the running object "
            "(or whatever consumes with that group) first, then reset again"
        )
    return GroupResetError(f"{group.label}: cannot {doing} consumer group {group.group!r}: {error.str()}; {left}")
