"""Dead letters: the record kept for a message that could not be used, published and counted."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import REGISTRY

from sluice import events as ev
from sluice.bus.base import Message
from sluice.bus.dead_letter import dead_letter, dead_letter_record, parse_dead_letter
from sluice.bus.embedded import EmbeddedBus


def counted(topic: str) -> float:
    return REGISTRY.get_sample_value("sluice_bus_dead_letters_total", {"topic": topic}) or 0.0


def test_record_keeps_where_the_message_was_why_and_its_bytes() -> None:
    text = Message("sluice.ready.ingest", 3, 42, "1001", b'{"type": "Nope"}', 0.0)
    binary = Message("sluice.events", 0, 7, None, b"\xff\x00\xfe", 0.0)
    key, data = dead_letter_record(text, "not a Sluice event: bad tag", "workers.ingest")
    assert key == "1001"
    record = json.loads(data)
    assert {k: record[k] for k in ("topic", "partition", "offset", "key", "reason", "group", "value", "value_encoding")} == {
        "topic": "sluice.ready.ingest",
        "partition": 3,
        "offset": 42,
        "key": "1001",
        "reason": "not a Sluice event: bad tag",
        "group": "workers.ingest",
        "value": '{"type": "Nope"}',
        "value_encoding": "utf-8",
    }
    assert record["ts"].endswith("+00:00")
    _, data = dead_letter_record(binary, "x" * 10_000, "coordinator.r1")
    letter = parse_dead_letter(data)
    assert letter.value == b"\xff\x00\xfe" and json.loads(data)["value_encoding"] == "base64"
    assert letter.key is None and len(letter.reason) == 2000


def test_dead_letter_publishes_and_counts(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus.db")
    before = counted("some.topic")
    assert dead_letter(bus, Message("some.topic", 0, 5, "k", b"garbage", 0.0), "not a Sluice event: x", "g")
    [stored] = bus.read(ev.DEAD_LETTER_TOPIC)
    assert stored.key == "k"
    letter = parse_dead_letter(stored.value)
    assert (letter.topic, letter.offset, letter.group, letter.value) == ("some.topic", 5, "g", b"garbage")
    assert counted("some.topic") - before == 1
    bus.close()


def test_dead_letter_on_a_broken_bus_logs_instead_of_raising(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus.db")
    bus.close()
    for path in tmp_path.iterdir():
        path.unlink()
    (tmp_path / "bus.db").mkdir()  # the bus file can no longer be opened
    before = counted("some.topic")
    assert not dead_letter(bus, Message("some.topic", 0, 1, None, b"x", 0.0), "reason", "g")
    assert counted("some.topic") == before
