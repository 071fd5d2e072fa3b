"""Per-date outputs and the plain output holding the latest date's (sluice.lake.dated), on the local and S3 lakes,
plain and partitioned, including dates promoted at once from several threads."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest

from lake.contract import Backend
from sluice.lake.base import Lake, LakeWrite
from sluice.lake.dated import candidate_name, dated_name, held_logical_date, promote, prune_dated, stamp
from sluice.lake.versioned import Retention

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


def _ids(lake: Lake, location: str) -> list[int]:
    return sorted(lake.read(location).read_all().column("id").to_pylist())


@pytest.mark.parametrize("partition_by", [(), ("dt",)])
def test_promotion_links_the_per_date_data_and_the_plain_output_keeps_it_whatever_becomes_of_the_per_date_output(
    backend: Backend, partition_by: tuple[str, ...]
) -> None:
    """No data written twice: S3 and a partitioned output commit a manifest naming the per-date version's files, the
    local lake links hard links to the per-date file. Rewriting that per-date output (keeping one version) leaves the
    plain output as promoted: the version it links to is pinned; so does removing it on the local lake."""
    lake = backend.lake(Retention(keep_versions=1, orphan_grace_s=0))
    date = DATES[2]
    written = lake.write("raw", dated_name("t", date), _day(3), partition_by=partition_by)
    before = set(backend.listing())
    assert promote(lake, "raw", "t", written, date, partition_by)
    lake.flush()
    added = sorted(name for name in set(backend.listing()) - before if not name.endswith(".promote.lock"))
    plain = lake.current_location("raw", "t")
    assert plain is not None and _ids(lake, plain) == [30, 31, 32]
    if backend.kind == "local" and not partition_by:  # a parts folder of hard links to the per-date file
        root = Path(backend.spec["root"])
        assert [Path(name).name for name in added] == ["_logical_date", "part-00000.parquet"]
        assert (root / added[1]).stat().st_ino == (root / written.location).stat().st_ino
    else:  # one manifest naming the per-date version's files
        assert added == ["raw/t/_manifest.json"]
        assert all(dated_name("t", date) in url for url in lake.parquet_files(plain))
    held = held_logical_date(lake, "raw", "t")
    assert held is not None and held.isoformat() == date

    for index in (5, 6):  # the same date run again twice (its check failing: not promoted)
        lake.write("raw", dated_name("t", date), _day(index), partition_by=partition_by)
        lake.flush()
    assert _ids(lake, written.location) == [60 + k for k in range(6)]
    assert _ids(lake, plain) == [30, 31, 32]
    if backend.kind == "local" and not partition_by:
        lake.remove("raw", dated_name("t", date))
        assert lake.current_location("raw", dated_name("t", date)) is None
        assert _ids(lake, plain) == [30, 31, 32]


def test_a_candidate_is_promoted_without_a_date_and_then_a_date_replaces_it(backend: Backend) -> None:
    """An output promoted without a logical date (a checked candidate: docs/checks.md) holds none: the next date's
    replaces it, and a write of the plain output itself drops the link and its date."""
    lake = backend.lake()
    candidate = lake.write("raw", candidate_name("t"), _day(2))
    assert promote(lake, "raw", "t", candidate, None)
    assert held_logical_date(lake, "raw", "t") is None
    dated = lake.write("raw", dated_name("t", DATES[0]), _day(4))
    assert promote(lake, "raw", "t", dated, DATES[0])
    plain = lake.current_location("raw", "t")
    assert plain is not None and _ids(lake, plain) == [40, 41, 42, 43]
    lake.write("raw", "t", _day(1))
    assert held_logical_date(lake, "raw", "t") is None and _ids(lake, plain) == [10]


def test_prune_removes_old_per_date_outputs_but_the_one_the_plain_output_holds_and_running_dates(backend: Backend) -> None:
    """prune_dated: per-date outputs written before the cutoff go, except the latest date's (held by the plain
    output, which stays readable) and a date whose run is still running; a dry run counts them and removes none."""
    lake = backend.lake()
    for index in range(1, 6):
        written = lake.write("raw", dated_name("t", DATES[index - 1]), _day(index))
        promote(lake, "raw", "t", written, DATES[index - 1])
    lake.write("raw", "other", _day(1))  # not a per-date output: never pruned
    names = [dated_name("t", date) for date in DATES[:5]]
    assert [o.name for o in lake.outputs("raw", "t.ld-")] == names
    assert prune_dated(lake, [("raw", "t")], time.time() - 3600) == 0  # none written before the cutoff
    after = time.time() + 1
    assert prune_dated(lake, [("raw", "t")], after, running=[DATES[1]], dry_run=True) == 3
    assert [o.name for o in lake.outputs("raw", "t.ld-")] == names
    assert prune_dated(lake, [("raw", "t")], after, running=[DATES[1]]) == 3
    assert [o.name for o in lake.outputs("raw", "t.ld-")] == [names[1], names[4]]
    plain = lake.current_location("raw", "t")
    assert plain is not None and _ids(lake, plain) == [50 + k for k in range(5)]
    assert lake.current_location("raw", "other") is not None
    assert not [name for name in backend.listing() if any(n in name for n in (names[0], names[2], names[3]))]


def test_prune_removes_the_parts_folders_earlier_promotions_left_once_their_grace_is_over(tmp_path: Path) -> None:
    """Promotions within PARTS_GRACE_S of each other keep the earlier parts folders (a reader may still be in one),
    each holding hard links to a per-date output's data: prune removes them once that grace is over, so pruning
    per-date outputs frees their space; the one the plain output links to stays."""
    from sluice.lake.local import LocalLake
    from sluice.lake.local_parts import PARTS_GRACE_S

    lake = LocalLake(tmp_path / "lake")
    for index in range(1, 4):  # three dates promoted within the grace: three parts folders
        written = lake.write("raw", dated_name("t", DATES[index - 1]), _day(index))
        promote(lake, "raw", "t", written, DATES[index - 1])
    folders = sorted((tmp_path / "lake" / "raw").glob(".t.parquet.parts-*"))
    assert len(folders) == 3
    old = time.time() - PARTS_GRACE_S - 10
    for folder in folders:  # the grace is over for all of them
        os.utime(folder, (old, old))
    assert prune_dated(lake, [("raw", "t")], time.time() + 1, dry_run=True) == 2
    assert len(sorted((tmp_path / "lake" / "raw").glob(".t.parquet.parts-*"))) == 3  # a dry run removes nothing
    assert prune_dated(lake, [("raw", "t")], time.time() + 1) == 2
    left = sorted((tmp_path / "lake" / "raw").glob(".t.parquet.parts-*"))
    assert [f.name for f in left] == [os.readlink(tmp_path / "lake" / "raw" / "t.parquet")]
    plain = lake.current_location("raw", "t")
    assert plain is not None and _ids(lake, plain) == [30, 31, 32]
