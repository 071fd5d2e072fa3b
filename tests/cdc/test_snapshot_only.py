"""``snapshot: initial_only`` ends by itself in every layout, and zero dates turned into NULL are counted per
table (status, status file, metric), over the in-memory fakes of the plugins on the embedded bus."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client import REGISTRY
from tests.cdc.fakes import FakeCapture, FakeWorld
from tests.cdc.test_runtime import in_thread, make_world, runtime, same, settings, wait_for

from sluice.bus.embedded import EmbeddedBus
from sluice.cdc.base import Capture, ChangeBatch, SnapshotChunk
from sluice.cdc.events import ChangeEvent, Position, TableSchema
from sluice.cdc.runtime import SyncRuntime
from sluice.cdc.status import read_status

ENDS_WITHIN_S = 60.0
"""A run that has not ended by then never will: the test fails (generous; no timing is asserted)."""
ZERO = "0000-00-00"
"""A name the zero-date fake capture turns into NULL (``None``) and counts, as MariaDB capture does a zero date."""


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[EmbeddedBus]:
    bus = EmbeddedBus(str(tmp_path / "bus.db"))
    yield bus
    bus.close()


def ended(rt: SyncRuntime) -> Any:
    """Run ``rt`` to its end; fails when it does not end by itself."""
    thread, out = in_thread(rt)
    thread.join(ENDS_WITHIN_S)
    if thread.is_alive():
        rt.stop()
        thread.join(30)
        pytest.fail(f"sync {rt.settings.name} with roles {sorted(rt.roles)} did not end after its snapshot")
    assert not isinstance(out[0], Exception), out[0]
    return out[0]


def test_initial_only_applies_the_snapshot_then_ends_and_streams_nothing(bus: EmbeddedBus, tmp_path: Path) -> None:
    world = make_world(rows=30)
    status = ended(runtime(world, bus, tmp_path, settings(snapshot="initial_only")))
    assert same(world, "emp") and same(world, "dept")
    assert status.state == "stopped"
    assert {t.source_table: t.applied for t in status.tables} == {"app.emp": {"snapshot": 30}, "app.dept": {"snapshot": 30}}
    # A later start finds the snapshot done: it streams nothing and ends again.
    world.dbs["src"].write("app.emp", {"id": 99, "name": "after", "n": 1})
    again = ended(runtime(world, bus, tmp_path, settings(snapshot="initial_only")))
    assert not same(world, "emp")
    assert all(not t.applied for t in again.tables), again.tables


def test_initial_only_ends_with_capture_and_apply_in_separate_runtimes(bus: EmbeddedBus, tmp_path: Path) -> None:
    """``--role apply`` started first waits for the snapshot to be published, applies it and ends; ``--role
    capture`` ends once it published it (``--processes 2``'s child, Kafka's split roles)."""
    world = make_world(rows=30)
    sync = settings(snapshot="initial_only")
    apply = runtime(world, bus, tmp_path, sync, roles=("apply",))
    apply_thread, apply_out = in_thread(apply)
    captured = ended(runtime(world, bus, tmp_path, sync, roles=("capture",)))
    assert {t.source_table: t.captured for t in captured.tables} == {"app.emp": {"snapshot": 30}, "app.dept": {"snapshot": 30}}
    apply_thread.join(ENDS_WITHIN_S)
    if apply_thread.is_alive():
        apply.stop()
        apply_thread.join(30)
        pytest.fail("the apply runtime did not end after applying the snapshot")
    assert not isinstance(apply_out[0], Exception), apply_out[0]
    assert same(world, "emp") and same(world, "dept")


def test_initial_only_both_ways_ends(bus: EmbeddedBus, tmp_path: Path) -> None:
    world = make_world(rows=10, tables=("emp",))
    status = ended(runtime(world, bus, tmp_path, settings(tables=["emp"], direction="both", snapshot="initial_only")))
    assert same(world, "emp")
    assert status.state == "stopped"


class ZeroDateCapture(FakeCapture):
    """A fake capture turning the name :data:`ZERO` into NULL and counting it, as MariaDB capture does with a zero
    date; ``per_table``: the batches split the count per table (else only the total, like a third-party capture)."""

    per_table = True

    def snapshot(self, table: TableSchema, after_key: list[Any] | None, chunk_rows: int) -> Iterator[SnapshotChunk]:
        for chunk in super().snapshot(table, after_key, chunk_rows):
            events, invalid = zero_dates(chunk.events)
            yield dataclasses.replace(chunk, events=events, invalid_dates=invalid)

    def stream(self, start: Position, tables: Sequence[TableSchema], max_wait_s: float) -> Iterator[ChangeBatch]:
        for batch in super().stream(start, tables, max_wait_s):
            events, invalid = zero_dates(batch.events)
            by_table: dict[str, int] = {}
            if self.per_table:
                for event in batch.events:
                    if isinstance(event, ChangeEvent) and event.after is not None and event.after.get("name") == ZERO:
                        by_table[event.table] = by_table.get(event.table, 0) + 1
            yield dataclasses.replace(batch, events=events, invalid_dates=invalid, invalid_dates_by_table=by_table)


def zero_dates(events: Sequence[Any]) -> tuple[list[Any], int]:
    out, invalid = [], 0
    for event in events:
        if isinstance(event, ChangeEvent) and event.after is not None and event.after.get("name") == ZERO:
            event = msgspec.structs.replace(event, after={**event.after, "name": None})
            invalid += 1
        out.append(event)
    return out, invalid


def keys(world: FakeWorld, table: str) -> list[Any]:
    """The keys of ``table`` in the target (its rows differ from the source's where a zero date became NULL)."""
    return sorted(key[0] for key in world.dbs["dst"].snapshot_rows(f"public.{table}"))


def zero_date_factory(world: FakeWorld, per_table: bool) -> Any:
    def capture(url: str, options: object, sync: str, side: str, marker_table: str | None) -> Capture:
        made = ZeroDateCapture(world.dbs[side], sync, side, marker_table)
        made.per_table = per_table
        world.captures.append(made)
        return made

    return capture


@pytest.mark.parametrize("per_table", [True, False], ids=["per-table", "total-only"])
@pytest.mark.parametrize("split", [False, True], ids=["one-process", "capture-and-apply-apart"])
def test_invalid_dates_of_snapshot_and_stream_are_counted_per_table(
    bus: EmbeddedBus, tmp_path: Path, per_table: bool, split: bool
) -> None:
    world = make_world(rows=0)
    src = world.dbs["src"]
    src.bulk_snapshot = False  # rows as events, which the fake capture rewrites
    for i in range(5):
        src.write("app.emp", {"id": i, "name": ZERO if i < 2 else f"n{i}", "n": i})
    src.write("app.dept", {"id": 1, "name": "d", "n": 1})
    name = f"dates_{'split' if split else 'one'}_{'pt' if per_table else 'total'}"
    sync = settings(name=name)
    factory = zero_date_factory(world, per_table)

    def make(roles: tuple[str, ...]) -> SyncRuntime:
        return SyncRuntime(
            sync, {"src": "mysql://u@h/app", "dst": "postgresql://u@h/dw"}, bus, tmp_path / ".sluice",
            roles=roles, capture_factory=factory, apply_factory=world.apply, workers=2,
        )  # fmt: skip

    runtimes = [make(("capture",)), make(("apply",))] if split else [make(("capture", "apply"))]
    threads = [in_thread(rt)[0] for rt in runtimes]
    try:
        wait_for(lambda: keys(world, "emp") == [0, 1, 2, 3, 4] and same(world, "dept"))
        src.write("app.emp", {"id": 10, "name": ZERO, "n": 10})
        src.write("app.emp", {"id": 11, "name": ZERO, "n": 11})
        src.write("app.emp", {"id": 12, "name": ZERO, "n": 12})
        wait_for(lambda: keys(world, "emp") == [0, 1, 2, 3, 4, 10, 11, 12])

        def counted() -> dict[str, int]:
            status = read_status(tmp_path / ".sluice", name)
            return {t.source_table: t.invalid_dates for t in status.tables} if status is not None else {}

        # The status file(s) the status command reads, merged: 2 in the snapshot, 3 in the stream.
        wait_for(lambda: counted() == {"app.emp": 5, "app.dept": 0})
    finally:
        for rt in runtimes:
            rt.stop()
        for thread in threads:
            thread.join(30)
    names = {key[0]: row["name"] for key, row in world.dbs["dst"].snapshot_rows("public.emp").items()}
    assert names == {0: None, 1: None, 2: "n2", 3: "n3", 4: "n4", 10: None, 11: None, 12: None}
    assert REGISTRY.get_sample_value("sluice_cdc_invalid_dates_total", {"sync": name, "table": "app.emp"}) == 5
    assert REGISTRY.get_sample_value("sluice_cdc_invalid_dates_total", {"sync": name, "table": "app.dept"}) == 0
