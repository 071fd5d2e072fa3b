"""Per-date outputs and the plain output holding the latest date's (sluice.lake.dated), on the local and S3 lakes,
plain and partitioned, including dates promoted at once from several threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest

from lake.contract import Backend
from sluice.lake.base import LakeWrite
from sluice.lake.dated import dated_name, held_logical_date, promote, stamp

DATES = [f"2026-01-{d:02d}T00:00:00+00:00" for d in range(1, 9)]


def _day(index: int) -> pa.RecordBatchReader:
    table = pa.table({"id": pa.array([index * 10 + k for k in range(index)], pa.int64()), "dt": [f"d{index}"] * index})
    return pa.RecordBatchReader.from_batches(table.schema, table.to_batches())


@pytest.mark.parametrize("partition_by", [(), ("dt",)])
def test_the_plain_output_ends_as_the_latest_dates_whatever_order_dates_finish_in(
    backend: Backend, partition_by: tuple[str, ...]
) -> None:
    lake = backend.lake()

    def one(index: int) -> tuple[int, LakeWrite]:
        written = lake.write("raw", dated_name("t", DATES[index - 1]), _day(index), partition_by=partition_by)
        promote(lake, "raw", "t", written, DATES[index - 1], partition_by)
        return index, written

    with ThreadPoolExecutor(4) as pool:  # latest date first, then the others at once
        results = dict([one(8), *pool.map(one, [3, 1, 7, 2, 6, 4, 5])])
    for index, written in results.items():  # no date lost its own output
        assert sorted(lake.read(written.location).read_all().column("id").to_pylist()) == [index * 10 + k for k in range(index)]
    location = lake.current_location("raw", "t")
    assert location is not None
    assert sorted(lake.read(location).read_all().column("id").to_pylist()) == [80 + k for k in range(8)]
    held = held_logical_date(lake, "raw", "t")
    assert held is not None and held.isoformat() == DATES[-1]


def test_a_naive_logical_date_is_utc_and_names_sort_by_date() -> None:
    assert stamp("2026-01-02T03:04:05") == "20260102T030405Z"
    assert stamp("2026-01-02T03:04:05+02:00") == "20260102T010405Z"
    assert sorted(dated_name("t", d) for d in reversed(DATES)) == [dated_name("t", d) for d in DATES]
