"""Spreading a table's changes over partitions (sluice.cdc.partitions), without servers; the refusal on the
embedded bus; status of several apply processes; lag of the most behind partition."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sluice.bus.embedded import EmbeddedBus
from sluice.cdc.base import SnapshotChunk
from sluice.cdc.config import SyncSettings
from sluice.cdc.events import ChangeEvent, Column, SchemaChange, SnapshotRows, Source, TableSchema, decode, key_text
from sluice.cdc.partitions import barrier_id, is_table_wide, partition_of, route, split_rows
from sluice.cdc.runtime import SyncRuntime
from sluice.cdc.snapshot_messages import partitioned_snapshot_messages
from sluice.cdc.state import SyncState
from sluice.cdc.status import SyncStatus, TableStatus, read_status, write_status
from sluice.errors import BusError, ConfigError

SRC = Path(__file__).resolve().parents[2] / "src"
SOURCE = Source("mysql", "hr", [3, 120, 0], "bin.000003:120", 1_700_000_000_000_000)
TABLE = TableSchema("hr", "emp", [Column("id", "int64"), Column("name", "string")], ["id"])


def keys_in_other_partitions(count: int) -> tuple[int, int]:
    """Two integer keys whose partitions (of ``count``) differ."""
    first = partition_of(key_text([1]), count)
    other = next(k for k in range(2, 100) if partition_of(key_text([k]), count) != first)
    return 1, other


def test_pkeys_partition_of_is_stable_and_in_range() -> None:
    found = {partition_of(key_text([k]), 4) for k in range(200)}
    assert found == {0, 1, 2, 3}
    assert partition_of('["abc",1]', 7) == partition_of('["abc",1]', 7) < 7  # CRC-32: no per-process salt
    assert partition_of("[42]", 1) == 0


def test_pkeys_a_key_change_across_partitions_is_a_delete_and_an_insert() -> None:
    old, new = keys_in_other_partitions(4)
    update = ChangeEvent("u", "hr.emp", [new], SOURCE, before={"id": old, "name": "a"}, after={"id": new, "name": "b"})
    routed = route(update, key_text([new]), ["id"], 4)
    assert [(p, key, e.op, e.key) for p, key, e in routed] == [
        (partition_of(key_text([old]), 4), key_text([old]), "d", [old]),
        (partition_of(key_text([new]), 4), key_text([new]), "c", [new]),
    ]
    assert routed[0][2].before == {"id": old, "name": "a"} and routed[0][2].after is None
    assert routed[1][2].after == {"id": new, "name": "b"} and routed[1][2].before is None
    assert all(e.source == SOURCE for _, _, e in routed)
    same = ChangeEvent("u", "hr.emp", [old], SOURCE, before={"id": old, "name": "a"}, after={"id": old, "name": "c"})
    assert route(same, key_text([old]), ["id"], 4) == [(partition_of(key_text([old]), 4), key_text([old]), same)]
    assert route(update, key_text([new]), ["id"], 1) == [(0, key_text([new]), update)]  # one partition: as is


def test_pkeys_snapshot_rows_go_to_their_keys_partition_in_key_order() -> None:
    rows: list[list[Any]] = [[i, f"n{i}"] for i in range(50)]
    parts = split_rows(rows, [0], 4)
    assert sorted(r for part in parts.values() for r in part) == rows
    for p, part in parts.items():
        assert all(partition_of(key_text([row[0]]), 4) == p for row in part) and part == sorted(part)
    chunk = SnapshotChunk("hr.emp", [], [49], 50, columns=["id", "name"], rows=rows, source=SOURCE)
    messages = partitioned_snapshot_messages(TABLE, chunk, [3, 100, 0], "bin.000003:100", 4)
    assert [p for p, _ in messages] == sorted(parts)
    for p, batch in messages:
        decoded = [decode(value) for _, value in batch]
        assert all(isinstance(m, SnapshotRows) and m.source.position == [3, 100, 0] for m in decoded)
        assert [row for m in decoded if isinstance(m, SnapshotRows) for row in m.rows] == parts[p]


def test_pkeys_table_wide_events_and_their_identity() -> None:
    schema = SchemaChange("hr.emp", TABLE, "add_column", SOURCE)
    truncate = ChangeEvent("t", "hr.emp", [], SOURCE)
    assert is_table_wide(schema) and is_table_wide(truncate)
    assert not is_table_wide(ChangeEvent("c", "hr.emp", [1], SOURCE, after={"id": 1}))
    assert barrier_id(b"value", "bin:1") == barrier_id(b"value", "bin:1") != barrier_id(b"other", "bin:1")


def test_pkeys_embedded_bus_has_one_partition(tmp_path: Path) -> None:
    bus = EmbeddedBus(str(tmp_path / "bus.db"))
    try:
        assert not bus.partitioned and bus.create_topic("t", 4) == 1
        bus.publish_partitions([("t", 0, [("k", b"v")])])
        assert [m.value for m in bus.read("t")] == [b"v"]
        with pytest.raises(BusError, match="one partition per topic"):
            bus.publish_partitions([("t", 1, [("k", b"v")])])
    finally:
        bus.close()


def test_pkeys_partitions_refused_on_the_embedded_bus(tmp_path: Path) -> None:
    settings = msgspec.convert({"name": "pkeys_s", "source": "a", "target": "b", "tables": ["t"], "partitions": 4}, SyncSettings)
    bus = EmbeddedBus(str(tmp_path / "bus.db"))
    try:
        with pytest.raises(ConfigError, match="partitions: 4 needs a Kafka bus"):
            SyncRuntime(settings, {"a": "mysql://x/y", "b": "postgresql://x/y"}, bus, tmp_path)
    finally:
        bus.close()
    (tmp_path / "sluice.yaml").write_text(
        "connections:\n  my: mysql://u:p@127.0.0.1:1/db\n  pg: postgresql://u@127.0.0.1:1/db\n"
        "syncs:\n  - name: pkeys_s\n    source: my\n    target: pg\n    tables: [t]\n    partitions: 4\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    for command in (["validate"], ["sync"]):  # the file alone says it: no server is asked
        done = subprocess.run(
            [sys.executable, "-m", "sluice", *command, str(tmp_path)], capture_output=True, text=True, env=env, timeout=60
        )
        assert done.returncode == 2, done.stdout + done.stderr
        lines = [line for line in done.stderr.splitlines() if "partitions" in line]
        assert len(lines) == 1 and "sluice.yaml:9: sync 'pkeys_s': partitions: 4 needs a Kafka bus" in lines[0], done.stderr


def test_pkeys_status_of_two_apply_processes_is_summed(tmp_path: Path) -> None:
    def status(pid: int, applied: dict[str, int], lag: float, position: str) -> SyncStatus:
        row = TableStatus("hr.emp", "public.emp", "my -> pg", "streaming", position=position, lag_s=lag, applied=applied)
        return SyncStatus("s", "my", "pg", "one-way", "streaming", pid=pid, roles=["apply:pg"], tables=[row])

    live = os.getpid()  # both run (a gone apply's lag is unknown)
    write_status(tmp_path, status(live, {"insert": 3, "update": 1}, 0.5, "bin.1:10"), "apply.11")
    write_status(tmp_path, status(live, {"insert": 2}, 2.0, "bin.1:4"), "apply.12")
    capture = TableStatus("hr.emp", "public.emp", "my -> pg", "streaming", captured={"insert": 5, "update": 1})
    write_status(tmp_path, SyncStatus("s", "my", "pg", "one-way", "streaming", roles=["capture:my"], tables=[capture]), "capture")
    merged = read_status(tmp_path, "s")
    assert merged is not None and len(merged.tables) == 1
    table = merged.tables[0]
    assert table.applied == {"insert": 5, "update": 1} and table.captured == {"insert": 5, "update": 1}
    assert table.lag_s == 2.0 and table.position == "bin.1:4"


def test_pkeys_lag_is_the_most_behind_partition() -> None:
    state = SyncState("s", "my", "pg", "one-way", ["apply:pg"])
    state.table("my -> pg", "hr.emp", "public.emp")
    now_us = SOURCE.commit_ts_us
    state.applied("my -> pg", "hr.emp", {"c": 2}, 0, 0, "bin.1:50", now_us, partition=0)
    state.applied("my -> pg", "hr.emp", {"c": 3}, 0, 0, "bin.1:20", now_us - 5_000_000, partition=3)
    state.mark_idle("my -> pg", "hr.emp", 0)
    table = state.snapshot_status().tables[0]
    assert table.applied == {"insert": 5} and table.position == "bin.1:20"
    assert table.lag_s is not None and table.lag_s > 5
    state.mark_idle("my -> pg", "hr.emp", 3)
    assert state.snapshot_status().tables[0].lag_s == 0.0


def test_a_topic_with_another_partition_count_names_what_to_delete_as_the_broker_names_it() -> None:
    """The namespace of a Kafka bus, every topic and the consumer groups (a trial found the bare topic only)."""
    from sluice.cdc.base import SyncError
    from sluice.cdc.partitions import ensure_partitions

    class Namespaced:
        def create_topic(self, topic: str, partitions: int) -> int:
            return 1  # made by an earlier run without partitions:

        def kafka_name(self, name: str) -> str:
            return f"team-a.{name}"

    with pytest.raises(SyncError) as caught:
        ensure_partitions(Namespaced(), "sluice.cdc.s1.my.shop.orders", 3, "s1")  # type: ignore[arg-type]
    assert str(caught.value) == (
        "sync 's1': topic team-a.sluice.cdc.s1.my.shop.orders has 1 partition(s) but the sync sets partitions: 3; set it "
        "back, or stop the sync, delete on the broker its topics (every topic whose name starts with team-a.sluice.cdc.s1., "
        "the _heartbeat and _snapshot ones included) and its consumer groups (team-a.sluice-sync.s1.*), then start it "
        "with --resnapshot"
    )
