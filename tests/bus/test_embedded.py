"""What only the embedded bus promises: processes share one file; a killed local consumer's leases come back on join."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from sluice.bus.embedded import EmbeddedBus

# Each script gets the bus file and the topic as arguments and talks to the test on stdout, one line per step.
CONSUME_ONE = textwrap.dedent(
    """
    import sys
    from sluice.bus.embedded import EmbeddedBus

    consumer = EmbeddedBus(sys.argv[1]).consumer("g", sys.argv[2])
    print("ready", consumer.poll(timeout_s=0.0) == [], flush=True)
    received = consumer.poll(timeout_s=60.0)
    consumer.commit(received)
    print("got", *(m.value.decode() for m in received), flush=True)
    """
)

PUBLISH = textwrap.dedent(
    """
    import sys
    from sluice.bus.embedded import EmbeddedBus

    EmbeddedBus(sys.argv[1]).publish(sys.argv[2], [("k", sys.argv[3].encode())])
    """
)

LEASE_AND_HANG = textwrap.dedent(
    """
    import sys, time
    from sluice.bus.embedded import EmbeddedBus

    received = EmbeddedBus(sys.argv[1]).consumer("g", sys.argv[2], lease_s=600.0).poll(timeout_s=60.0)
    print("leased", *(m.offset for m in received), flush=True)
    time.sleep(600)
    """
)


def python(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait()
        assert process.stderr is not None
        raise AssertionError(f"the child process ended without answering:\n{process.stderr.read()}")
    return line.strip()


def test_a_message_published_by_one_process_is_consumed_by_another(tmp_path: Path) -> None:
    path = str(tmp_path / "bus.db")
    consumer = python(CONSUME_ONE, path, "t")
    try:
        assert read_line(consumer) == "ready True"  # polling, with nothing to read yet
        publisher = python(PUBLISH, path, "t", "from-A")
        publisher.communicate(timeout=60)
        assert publisher.returncode == 0
        assert read_line(consumer) == "got from-A"
        assert consumer.wait(timeout=60) == 0
    finally:
        consumer.kill()
        consumer.communicate()

    bus = EmbeddedBus(path)
    try:
        assert bus.lag("g", "t") == 0
    finally:
        bus.close()


def test_leases_of_a_killed_local_consumer_come_back_when_a_consumer_joins(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    bus = EmbeddedBus(path)
    try:
        offsets = bus.publish("t", [("k", b"a"), ("k", b"b")])
        worker = python(LEASE_AND_HANG, str(path), "t")
        try:
            assert read_line(worker) == "leased " + " ".join(map(str, offsets))
        finally:
            os.kill(worker.pid, signal.SIGKILL)
            worker.communicate()  # reaps it: a zombie's pid would still look alive
        assert worker.returncode == -signal.SIGKILL

        # The worker's leases last ten minutes: only the join can have freed them.
        received = bus.consumer("g", "t").poll(timeout_s=0.0)
        assert [(m.offset, m.value, m.deliveries) for m in received] == [(offsets[0], b"a", 2), (offsets[1], b"b", 2)]
    finally:
        bus.close()


def test_retention_deletes_old_messages_but_keeps_offsets_increasing(tmp_path: Path) -> None:
    import time as clock

    from sluice.bus.registry import open_bus

    bus = EmbeddedBus(tmp_path / "bus.db")
    first = bus.publish("t", [("k", b"old"), ("k", b"older")])
    assert bus.prune(clock.time() + 1) == 1  # everything is "old": all but the newest message go
    assert [m.value for m in bus.read("t")] == [b"older"]
    later = bus.publish("t", [("k", b"new")])
    assert later[0] > first[-1]
    bus.close()
    reopened = open_bus(f"sqlite:///{tmp_path / 'bus.db'}?retention_days=0")
    assert [m.value for m in reopened.read("t")] == [b"older", b"new"]
    reopened.close()


def test_an_exclusive_consumer_reads_past_what_its_own_group_published(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus.db")
    try:
        bus.publish("t", [("k", b"before")])
        own = bus.consumer("own", "t", exclusive=True)
        bus.publish_many([("t", [("k", b"mine 1"), ("k", b"mine 2")]), ("other", [("k", b"elsewhere")])], own_group="own")
        bus.publish("t", [("k", b"theirs 1")])
        bus.publish_many([("t", [("k", b"mine 3")])], own_group="own")
        bus.publish("t", [("k", b"theirs 2"), ("k", b"theirs 3")])

        assert [m.value for m in own.poll(2, timeout_s=0)] == [b"before", b"theirs 1"]  # a full poll stops at its limit
        assert [m.value for m in own.poll(10, timeout_s=0)] == [b"theirs 2", b"theirs 3"]
        assert own.poll(10, timeout_s=0) == []
        bus.publish_many([("t", [("k", b"mine 4")])], own_group="own")
        assert own.poll(10, timeout_s=0) == []

        everyone = bus.consumer("everyone", "t", exclusive=True)
        assert [m.value for m in everyone.poll(10, timeout_s=0)] == [
            b"before",
            b"mine 1",
            b"mine 2",
            b"theirs 1",
            b"mine 3",
            b"theirs 2",
            b"theirs 3",
            b"mine 4",
        ]
        offsets = [m.offset for m in bus.read("t", 0, 10)]
        assert offsets == sorted(offsets) and len(offsets) == 8  # rows of one multi-row write keep their order
        own.close()
        everyone.close()
    finally:
        bus.close()


def test_a_large_write_keeps_its_order_and_its_leases_are_all_taken_and_released(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus.db")
    try:
        values = [str(i).encode() for i in range(300)]  # several statements of different sizes
        offsets = bus.publish("t", [(None, v) for v in values])
        assert [(m.offset, m.value) for m in bus.read("t", 0, 1000)] == list(zip(offsets, values, strict=True))
        consumer = bus.consumer("g", "t")
        taken = consumer.poll(1000, timeout_s=0)
        assert [m.value for m in taken] == values
        assert bus.lag("g", "t") == 300  # leased, not committed
        consumer.commit(taken[:-1])
        assert bus.lag("g", "t") == 1
        consumer.commit(taken[-1:])
        assert bus.lag("g", "t") == 0
        consumer.close()
    finally:
        bus.close()


def test_wakeup_makes_a_waiting_poll_return_and_then_polls_wait_again(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus.db")
    consumer = bus.consumer("g", "topic")
    got: list[object] = []
    poller = threading.Thread(target=lambda: got.append(consumer.poll(timeout_s=600.0)))
    poller.start()
    poller.join(0.1)
    consumer.wakeup()
    poller.join(60)
    assert not poller.is_alive() and got == [[]]
    bus.publish("topic", [("k", b"v")])
    assert [m.value for m in consumer.poll(timeout_s=60.0)] == [b"v"]  # a wakeup is used up by the poll it ended
