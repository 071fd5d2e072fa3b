"""Event-time windows: tumbling, sliding, groups, watermark, late records, restarts from the saved state."""

from __future__ import annotations

import datetime as dt
import functools
import random
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import duckdb
import msgspec
import numpy as np
import pyarrow as pa
import pytest

from sluice.errors import TerminalError
from sluice.streaming.window_options import WindowOptions
from sluice.streaming.windows import Sources, WindowOperator, WindowResult, state_from_bytes, state_to_bytes

EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
SECOND = 1_000_000


Maker = Callable[..., WindowOperator]


@pytest.fixture(params=["partials", "records"])
def make(request: pytest.FixtureRequest) -> Maker:
    """WindowOperator keeping partial aggregates where it can, or always the records: both must agree."""
    return functools.partial(WindowOperator, partials=request.param == "partials")


def at(seconds: float) -> dt.datetime:
    return EPOCH + dt.timedelta(seconds=seconds)


def options(**overrides: Any) -> WindowOptions:
    raw: dict[str, Any] = {
        "type": "tumbling",
        "size": "10s",
        "time_column": "ts",
        "watermark": "5s",
        "aggregates": {"n": "count(*)", "total": "sum(amount)::BIGINT"},
    }
    raw.update(overrides)
    return msgspec.convert(raw, WindowOptions)


def batch(rows: list[tuple[float | None, int]], **extra: list[Any]) -> pa.Table:
    ts = pa.array([None if s is None else at(s) for s, _ in rows], pa.timestamp("us", tz="UTC"))
    return pa.table({"ts": ts, "amount": pa.array([a for _, a in rows], pa.int64()), **extra})


def rows_of(result: WindowResult) -> list[tuple[float, float, int, int]]:
    """(start s, end s, n, total) per closed window, seconds after EPOCH."""
    return [
        ((r["window_start"] - EPOCH).total_seconds(), (r["window_end"] - EPOCH).total_seconds(), r["n"], r["total"])
        for r in result.closed.to_pylist()
    ]


def test_tumbling_windows_close_once_when_the_watermark_passes_their_end(make: Maker) -> None:
    operator = make(options())
    first = operator.process(batch([(1, 1), (9, 2), (12, 4)]))
    assert first.closed.num_rows == 0 and first.watermark == at(7)
    second = operator.process(batch([(14, 8), (16, 16)]))  # watermark 11 closes [0, 10)
    assert rows_of(second) == [(0, 10, 2, 3)]
    third = operator.process(batch([(26, 32)]))  # watermark 21 closes [10, 20)
    assert rows_of(third) == [(10, 20, 3, 28)]
    assert operator.process(batch([(27, 1)])).closed.num_rows == 0  # nothing emitted twice
    assert third.closed.schema.field("window_start").type == pa.timestamp("us", tz="UTC")


def test_sliding_windows_give_each_record_to_size_over_slide_windows(make: Maker) -> None:
    operator = make(options(type="sliding", size="10s", slide="5s", watermark="0s"))
    result = operator.process(batch([(1, 1), (6, 2), (12, 4), (40, 0)]))
    assert rows_of(result) == [(-5, 5, 1, 1), (0, 10, 2, 3), (5, 15, 2, 6), (10, 20, 1, 4), (35, 45, 1, 0)][:-1]
    assert rows_of(operator.flush()) == [(35, 45, 1, 0), (40, 50, 1, 0)]


def test_sliding_windows_whose_size_is_not_a_multiple_of_the_slide(make: Maker) -> None:
    operator = make(options(type="sliding", size="10s", slide="4s", watermark="0s"))
    # 9 s is in the windows starting at 0, 4 and 8 (not at -4: it ends at 6)
    assert [row[:2] for row in rows_of(operator.process(batch([(9, 1), (100, 0)])))] == [(0, 10), (4, 14), (8, 18)]


def test_group_by_and_several_aggregates(make: Maker) -> None:
    aggregates = {
        "n": "count(*)",
        "total": "sum(amount)::BIGINT",
        "mean": "avg(amount)",
        "users": "count(DISTINCT user_id)",
        "spread": "max(amount) - min(amount)",
    }
    operator = make(options(group_by=["country"], aggregates=aggregates, watermark="0s"))
    table = batch([(1, 10), (2, 20), (3, 30), (4, 40), (50, 0)], country=["fr", "de", "fr", None, "fr"], user_id=[1, 2, 1, 3, 1])
    closed = operator.process(table).closed.to_pylist()
    assert [(r["country"], r["n"], r["total"], r["mean"], r["users"], r["spread"]) for r in closed] == [
        ("de", 1, 20, 20.0, 1, 0),
        ("fr", 2, 40, 20.0, 1, 20),
        (None, 1, 40, 40.0, 1, 0),
    ]
    assert list(operator.state().column_names) == ["ts", "amount", "country", "user_id", "__sluice_event_us"]


def test_only_the_columns_the_windows_read_are_kept_in_the_state() -> None:
    operator = WindowOperator(options(), partials=False)
    operator.process(batch([(1, 1)], payload=["x" * 100], other=[1]))
    assert operator.state().column_names == ["ts", "amount", "__sluice_event_us"]
    counting = WindowOperator(options(aggregates={"n": "count(*)"}), partials=False)
    counting.process(batch([(1, 1)], payload=["x"]))
    assert counting.state().column_names == ["ts", "__sluice_event_us"]


def test_out_of_order_records_within_the_watermark_are_counted_in(make: Maker) -> None:
    operator = make(options(watermark="5s"))
    assert operator.process(batch([(12, 1)])).watermark == at(7)
    result = operator.process(batch([(8, 2), (3, 4), (16, 8)]))  # 8 and 3 are older than 12 but [0, 10) is open
    assert result.late_records == 0 and rows_of(result) == [(0, 10, 2, 6)]


@pytest.mark.parametrize("late", ["drop", "side_output"])
def test_late_records_are_counted_and_dropped_or_returned(late: str, make: Maker) -> None:
    operator = make(options(watermark="0s", late=late))
    operator.process(batch([(1, 1), (15, 2)]))  # watermark 15 closes [0, 10)
    result = operator.process(batch([(2, 4), (9, 8), (11, 16), (14, 32)], note=["a", "b", "c", "d"]))
    assert result.late_records == 2
    if late == "drop":
        assert result.late is None
    else:
        assert result.late is not None and result.late.to_pydict()["note"] == ["a", "b"]  # every column, for the side output
    assert rows_of(operator.flush()) == [(10, 20, 3, 50)]


def test_a_window_ending_exactly_at_the_watermark_is_emitted_and_closed_to_later_records(make: Maker) -> None:
    operator = make(options(watermark="5s"))
    assert rows_of(operator.process(batch([(3, 1), (15, 2)]))) == [(0, 10, 1, 1)]  # watermark 10 = end of [0, 10)
    assert operator.state_records == 1  # the record at 3 s has no open window left: not kept
    result = operator.process(batch([(9.999999, 4), (10, 8)]))
    assert result.late_records == 1 and rows_of(operator.flush()) == [(10, 20, 2, 10)]


def test_a_sliding_record_whose_first_windows_closed_still_counts_in_the_open_ones(make: Maker) -> None:
    operator = make(options(type="sliding", size="10s", slide="5s", watermark="0s"))
    operator.process(batch([(10, 0)]))  # watermark 10 closes every window ending at or before 10
    result = operator.process(batch([(7, 1)]))  # in [0, 10) (closed) and [5, 15) (open)
    assert result.late_records == 0
    assert [row for row in rows_of(operator.flush()) if row[0] == 5] == [(5, 15, 2, 1)]


def test_empty_batches_change_nothing(make: Maker) -> None:
    operator = make(options())
    empty = batch([])
    result = operator.process(empty)
    assert result.closed.num_rows == 0 and result.watermark is None and result.late_records == 0
    operator.process(batch([(1, 1), (20, 2)]))
    again = operator.process(empty)
    assert again.closed.num_rows == 0 and again.watermark == at(15)
    assert again.closed.column_names == ["window_start", "window_end", "n", "total"]
    assert rows_of(operator.flush()) == [(20, 30, 1, 2)]


def test_null_and_unreadable_event_times_go_apart_for_the_dead_letters(make: Maker) -> None:
    operator = make(options(watermark="0s"))
    table = pa.table(
        {
            "ts": ["2024-01-01T00:00:01Z", None, "yesterday", "2024-01-01 01:00:00+01:00", "2024-01-01T00:00:30"],
            "amount": [1, 2, 3, 4, 5],
        }
    )
    result = operator.process(table)
    assert result.invalid.to_pydict() == {"ts": [None, "yesterday"], "amount": [2, 3]}
    assert "event time in column 'ts'" in result.invalid_reason
    assert rows_of(result) == [(0, 10, 2, 5)]  # 01:00+01:00 is midnight UTC; 00:00:30 (no offset) is UTC


def test_timestamps_without_a_zone_are_utc_and_other_units_are_read(make: Maker) -> None:
    naive = pa.table({"ts": pa.array([dt.datetime(2024, 1, 1, 0, 0, 1)], pa.timestamp("ns")), "amount": [1]})
    seconds = pa.table({"ts": pa.array([at(12)], pa.timestamp("s", tz="Europe/Paris")), "amount": [2]})
    operator = make(options(watermark="0s"))
    operator.process(naive)
    assert rows_of(operator.process(seconds)) == [(0, 10, 1, 1)]


def test_restart_from_the_state_at_every_boundary_equals_one_run(make: Maker) -> None:
    rng = random.Random(13)
    records = []
    clock = 0.0
    for _ in range(40):
        clock += rng.uniform(0, 2)
        records.append((round(clock - rng.uniform(0, 20), 3), rng.randrange(100)))  # out of order, some late
    config = options(type="sliding", size="6s", slide="2s", watermark="4s", group_by=["g"], late="side_output")

    def run(parts: list[list[tuple[float, int]]], restart_at: int | None) -> tuple[list[dict[str, Any]], int]:
        operator, closed, late = make(config), [], 0
        for index, part in enumerate(parts):
            if index == restart_at:
                operator = make(config, state_from_bytes(state_to_bytes(operator.state())))
            result = operator.process(batch(part, g=[int(a) % 3 for _, a in part]))
            closed += result.closed.to_pylist()
            late += result.late_records
        return closed, late

    for split in range(len(records) + 1):
        parts = [records[i : i + 7] for i in range(0, split, 7)] + [records[i : i + 5] for i in range(split, len(records), 5)]
        boundary = len(range(0, split, 7))
        expected = run(parts, None)
        assert run(parts, boundary) == expected, f"restart after record {split}"
        assert expected == reference(parts, size=6, slide=2, delay=4), f"split at {split}"
    assert expected[1] > 0 and len(expected[0]) > 20  # the stream has late records and many windows


def reference(parts: list[list[tuple[float, int]]], *, size: int, slide: int, delay: int) -> tuple[list[dict[str, Any]], int]:
    """The semantics written out record by record (the obvious way), grouped by amount % 3 as ``g``."""
    watermark: float | None = None
    windows: dict[tuple[int, int], list[int]] = defaultdict(list)
    closed: list[dict[str, Any]] = []
    late = 0
    for part in parts:
        for seconds, amount in part:
            micros = round(seconds * SECOND)
            start = micros // (slide * SECOND) * slide * SECOND
            starts = []
            while start + size * SECOND > micros:
                starts.append(start)
                start -= slide * SECOND
            open_starts = [s for s in starts if watermark is None or s + size * SECOND > watermark]
            late += not open_starts
            for s in open_starts:
                windows[(s, amount % 3)].append(amount)
        if part:
            top = max(round(s * SECOND) for s, _ in part) - delay * SECOND
            watermark = top if watermark is None else max(watermark, top)
        for key in sorted(k for k in windows if watermark is not None and k[0] + size * SECOND <= watermark):
            amounts = windows.pop(key)
            start_time = EPOCH + dt.timedelta(microseconds=key[0])  # EPOCH is a multiple of every size used here
            closed.append(
                {
                    "window_start": start_time,
                    "window_end": start_time + dt.timedelta(seconds=size),
                    "g": key[1],
                    "n": len(amounts),
                    "total": sum(amounts),
                }
            )
    return closed, late


@pytest.mark.parametrize(("size", "slide", "delay"), [(5, 5, 0), (5, 5, 3), (10, 4, 2), (9, 3, 7)])
def test_random_streams_and_cuts_match_the_record_by_record_semantics(size: int, slide: int, delay: int, make: Maker) -> None:
    rng = random.Random(size * 100 + slide * 10 + delay)
    clock, records = 0.0, []
    for _ in range(50):
        clock += rng.uniform(0, 1.5)
        records.append((round(2 * (clock - rng.uniform(0, 3 * size))) / 2, rng.randrange(50)))  # half seconds: ties
    parts, position = [], 0
    while position < len(records):
        step = rng.randrange(0, 9)  # 0: an empty micro-batch
        parts.append(records[position : position + step])
        position += step
    kind = "tumbling" if size == slide else "sliding"
    config = options(
        type=kind, size=f"{size}s", slide=None if kind == "tumbling" else f"{slide}s", watermark=f"{delay}s", group_by=["g"]
    )
    operator, closed, late = make(config), [], 0
    for part in parts:
        result = operator.process(batch(part, g=pa.array([a % 3 for _, a in part], pa.int64())))
        closed += result.closed.to_pylist()
        late += result.late_records
    assert (closed, late) == reference(parts, size=size, slide=slide, delay=delay)


def test_partial_aggregates_give_what_the_records_give() -> None:
    aggregates = {
        "n": "count(*)",
        "total": "sum(amount)",
        "mean": "avg(amount)",
        "spread": "max(amount) - min(amount)",
        "first": "min(ts)",
        "scaled": "round(sum(amount) / count(amount) * 2, 6) + g",
        "nn": "count(note)",
    }
    config = options(type="sliding", size="10s", slide="4s", watermark="3s", group_by=["g"], aggregates=aggregates)
    rng = random.Random(5)
    clock, parts = 0.0, []
    for _ in range(30):
        part = []
        for _ in range(rng.randrange(0, 12)):
            clock += rng.uniform(0, 0.5)
            part.append((round(clock - rng.uniform(0, 8), 3), rng.randrange(100)))
        parts.append(part)
    outputs = []
    for partials in (True, False):
        operator, closed = WindowOperator(config, partials=partials), []
        assert operator.keeps_partials is partials
        for part in parts:
            notes = [None if a % 4 == 0 else "x" for _, a in part]
            closed += operator.process(
                batch(part, g=pa.array([a % 3 for _, a in part], pa.int64()), note=notes)
            ).closed.to_pylist()
        closed += operator.flush().closed.to_pylist()
        outputs.append(closed)
    partial_rows, record_rows = outputs
    assert len(partial_rows) == len(record_rows) > 40
    for mine, theirs in zip(partial_rows, record_rows, strict=True):
        assert mine.keys() == theirs.keys()
        assert {k: v for k, v in mine.items() if k not in ("mean", "scaled")} == {
            k: v for k, v in theirs.items() if k not in ("mean", "scaled")
        }
        assert mine["mean"] == pytest.approx(theirs["mean"]) and mine["scaled"] == pytest.approx(theirs["scaled"])


def test_windows_go_on_after_every_open_window_was_emitted(make: Maker) -> None:
    operator = make(options(watermark="0s"))
    operator.process(batch([(1, 1), (25, 2)]))
    assert rows_of(operator.process(batch([(30, 4)]))) == [(20, 30, 1, 2)]
    assert operator.state_records == 1
    assert rows_of(operator.process(batch([(45, 8)]))) == [(30, 40, 1, 4)]
    assert rows_of(operator.process(batch([(41, 16)]))) == []
    assert rows_of(operator.flush()) == [(40, 50, 2, 24)]


def test_many_groups_match_one_duckdb_query_over_the_whole_input(make: Maker) -> None:
    rows = 200_000
    rng = np.random.default_rng(7)
    seconds = np.sort(rng.uniform(0, 600, rows))
    events = pa.table(
        {
            "ts": pa.array((seconds * SECOND).astype("int64")).cast(pa.timestamp("us", tz="UTC")),
            "user_id": rng.integers(0, 5_000, rows),
            "amount": rng.integers(0, 1_000, rows),
        }
    )
    operator = make(options(size="1m", watermark="0s", group_by=["user_id"]))
    closed = [operator.process(events.slice(offset, 25_000)).closed for offset in range(0, rows, 25_000)]
    closed.append(operator.flush().closed)
    got = pa.concat_tables(closed)
    expected = duckdb.sql(
        "SELECT epoch_us(ts) // 60000000 AS s, user_id, count(*) AS n, sum(amount)::BIGINT AS total "
        "FROM events GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    mine = sorted(
        zip(
            [int(v.timestamp()) // 60 for v in got.column("window_start").to_pylist()],
            got.column("user_id").to_pylist(),
            got.column("n").to_pylist(),
            got.column("total").to_pylist(),
            strict=True,
        )
    )
    assert mine == expected and len(mine) > 10 * 5_000 * 0.8


def test_a_state_saved_for_other_windows_or_garbage_is_refused() -> None:
    operator = WindowOperator(options())
    operator.process(batch([(1, 1)]))
    with pytest.raises(TerminalError, match=r"saved for windows 'tumbling size=10000000us.*restore the old window options"):
        WindowOperator(options(size="20s"), operator.state())
    with pytest.raises(TerminalError, match=r"partials group_by=\[\] aggregates=.*the options now say"):
        WindowOperator(options(aggregates={"n": "count(*)"}), operator.state())  # partial aggregates: fixed
    with pytest.raises(TerminalError, match="not an Arrow IPC stream"):
        state_from_bytes(b"nope")
    with pytest.raises(TerminalError, match="not a window state"):
        WindowOperator(options(), pa.table({"x": [1]}))
    records = WindowOperator(options(), partials=False)
    records.process(batch([(1, 1)]))
    saved = state_from_bytes(state_to_bytes(records.state()))
    same = WindowOperator(options(aggregates={"n": "count(*)", "top": "max(amount)"}), saved, partials=False)
    assert same.watermark == at(-4) and same.state_records == 1  # records: the aggregates may change


def test_partial_aggregates_keep_one_row_per_open_window_and_group() -> None:
    operator = WindowOperator(options(type="sliding", size="10s", slide="5s", group_by=["g"]))
    assert operator.keeps_partials
    operator.process(batch([(1, 1), (2, 2), (3, 3), (4, 4)], g=[1, 1, 2, 2], payload=["x"] * 4))
    state = operator.state()
    assert state.column_names == ["__sluice_window_start", "g", "__sluice_p0", "__sluice_p1"]
    assert operator.state_records == 4  # windows [-5, 5) and [0, 10) x groups 1 and 2
    assert not WindowOperator(options(aggregates={"u": "count(DISTINCT amount)"})).keeps_partials
    assert not WindowOperator(options(state="records")).keeps_partials


def test_wrong_time_column_group_column_or_aggregate_is_one_line(make: Maker) -> None:
    with pytest.raises(
        TerminalError, match=r"window.time_column: 'ts' is not a column of the micro-batch \(columns: when, amount\)"
    ):
        make(options()).process(pa.table({"when": [1], "amount": [1]}))
    with pytest.raises(TerminalError, match="'ts' is int64, not a time: give a timestamp column or ISO-8601 strings"):
        make(options()).process(pa.table({"ts": [1], "amount": [1]}))
    with pytest.raises(TerminalError, match=r"window\.group_by: 'country' is not a column"):
        make(options(group_by=["country"])).process(batch([(1, 1)]))
    with pytest.raises(TerminalError, match=r"window\.aggregates: DuckDB cannot compute them: .*amont"):
        make(options(aggregates={"t": "sum(amont)"}, watermark="0s")).process(batch([(1, 1), (30, 1)]))


def test_state_bytes_round_trip_keeps_types_and_watermark() -> None:
    operator = WindowOperator(options(aggregates={"n": "count(*)", "l": "max(label)"}), partials=False)
    operator.process(batch([(1, 1), (3, 2)], label=pa.array(["a", None], pa.large_string())))
    state = operator.state()
    again = state_from_bytes(state_to_bytes(state))
    assert again.equals(state) and again.schema.metadata == state.schema.metadata
    assert operator.state_records == 2 and operator.state_bytes > 0


def partitioned(
    parts: dict[int, list[tuple[float | None, int]]], idle: tuple[int, ...] = (), count: int = 2
) -> tuple[pa.Table, Sources]:
    """One micro-batch of records from several partitions (``{partition: [(seconds, amount)...]}``), with its Sources."""
    rows = [row for p in sorted(parts) for row in parts[p]]
    codes = np.array([p for p in sorted(parts) for _ in parts[p]], dtype=np.int64)
    names = [f"t:{p}" for p in range(count)]
    return batch(rows), Sources(codes, names, frozenset(names[p] for p in idle))


def test_the_watermark_is_the_smallest_of_the_partitions_so_a_slow_partition_is_not_late(make: Maker) -> None:
    """The trial's bug: a micro-batch reaching far into partition 0's event time made partition 1's next records late."""
    operator = make(options())  # tumbling 10 s, watermark 5 s
    first = operator.process(*partitioned({0: [(1, 1), (50, 1), (90, 1)], 1: [(2, 10), (20, 10)]}))
    assert first.watermark == at(15) and rows_of(first) == [(0, 10, 2, 11)]  # min(90, 20) - 5
    second = operator.process(*partitioned({1: [(25, 100), (40, 100)]}))  # partition 1 catches up to 40 s
    assert second.late_records == 0 and second.watermark == at(35)
    assert rows_of(second) == [(20, 30, 2, 110)]  # 20 s and 25 s of partition 1; [30, 40) waits for 45 s
    whole = make(options())  # the same records as one partition: the largest event time runs ahead
    whole.process(partitioned({0: [(1, 1), (50, 1), (90, 1)], 1: [(2, 10), (20, 10)]})[0])
    assert whole.process(partitioned({1: [(25, 100), (40, 100)]})[0]).late_records == 2


def test_a_partition_without_records_holds_the_watermark_until_it_is_idle(make: Maker) -> None:
    operator = make(options())
    held = operator.process(*partitioned({0: [(1, 1), (30, 1)]}))
    assert held.watermark is None and held.closed.num_rows == 0  # partition 1 may still bring [0, 10)
    idle = operator.process(*partitioned({}, idle=(1,)))  # partition 1 read to its end: at the front
    assert idle.watermark == at(25) and rows_of(idle) == [(0, 10, 1, 1)]
    both = operator.process(*partitioned({1: [(26, 2)]}))  # partition 1 speaks again: the minimum of both
    assert both.watermark == at(25) and both.late_records == 0
    ended = operator.process(*partitioned({0: [(60, 1)]}, idle=(0, 1)))  # every partition at its end: the front
    assert ended.watermark == at(55) and [r[:2] for r in rows_of(ended)] == [(20, 30), (30, 40)]


def test_a_truly_late_record_of_one_partition_is_still_late(make: Maker) -> None:
    operator = make(options(late="side_output"))
    operator.process(*partitioned({0: [(1, 1), (30, 1)], 1: [(2, 1), (31, 1)]}))  # watermark 25: [0, 20) emitted
    late = operator.process(*partitioned({1: [(32, 1), (4, 7)]}))  # 4 s arrives after its window closed
    assert late.late_records == 1 and late.late is not None and late.late.column("amount").to_pylist() == [7]
    table, sources = partitioned({0: [(None, 5), (90, 5)], 1: [(33, 1)]})
    unreadable = operator.process(table, sources)  # a row without a time leaves the codes aligned with the others
    assert unreadable.invalid.num_rows == 1 and unreadable.watermark == at(28)


def test_partition_fronts_survive_a_restart_and_a_state_saved_without_them_is_read(make: Maker) -> None:
    operator = make(options())
    operator.process(*partitioned({0: [(1, 1), (90, 1)], 1: [(2, 10), (20, 10)]}))
    again = make(options(), state_from_bytes(state_to_bytes(operator.state())))
    assert again.watermark == at(15)
    assert again.process(*partitioned({1: [(25, 100)]})).watermark == at(20)  # partition 0's 90 s remembered
    old = operator.state()  # as saved before the partitions' fronts: the watermark only
    metadata = {k: v for k, v in (old.schema.metadata or {}).items() if k != b"sluice.window.sources"}
    restored = make(options(), old.replace_schema_metadata(metadata))
    assert restored.watermark == at(15)
    held = restored.process(*partitioned({1: [(40, 1)]}))  # partition 0 unknown again: held where it was
    assert held.watermark == at(15) and held.late_records == 0
    assert restored.process(*partitioned({0: [(95, 1)]})).watermark == at(35)
