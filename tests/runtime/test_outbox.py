"""The outbox publishes outcomes with their commits, and retries a failed bus write instead of losing it."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from sluice import events as ev
from sluice.bus.base import Consumer, Message
from sluice.bus.embedded import EmbeddedBus
from sluice.runtime.outbox import Outbox


class FlakyBus(EmbeddedBus):
    """The embedded bus whose first ``failures`` publish-and-commit calls fail like a locked database."""

    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures

    def publish_and_commit(
        self, topic: str, messages: Sequence[tuple[str | None, bytes]], consumer: Consumer, settled: Sequence[Message]
    ) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise sqlite3.OperationalError("database is locked")
        super().publish_and_commit(topic, messages, consumer, settled)


def test_a_failed_write_is_retried_in_order(tmp_path: Path) -> None:
    bus = FlakyBus(tmp_path / "bus.db", failures=2)
    bus.publish("work", [("1", b"job")])
    consumer = bus.consumer("g", "work")
    job = consumer.poll(1)
    committed: list[Message] = []
    outbox = Outbox(bus, consumer, on_committed=committed.extend)
    started = ev.ObjectStarted(run_id="r", object_id=1, stage="ingest")
    loaded = ev.ObjectLoaded(run_id="r", object_id=1, stage="ingest", rows=3)
    outbox.send([started, loaded], job)
    deadline = time.monotonic() + 20
    while not committed and time.monotonic() < deadline:
        time.sleep(0.02)
    outbox.close()
    assert bus.failures == 0
    assert committed == job
    published = [ev.decode(m.value) for m in bus.read(ev.EVENTS_TOPIC)]
    assert published == [started, loaded]
    assert bus.lag("g", "work") == 0
    bus.close()
