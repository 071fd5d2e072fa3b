"""Append-only datasets (Lake.append, last_commit, stage_append): the contract every lake keeps, local and S3."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lake.contract import Backend, batches_of
from sluice.errors import TerminalError
from sluice.lake.versioned import Retention
from sluice.transforms.sql import run_sql

CHILD = Path(__file__).with_name("appender_child.py")


def test_each_append_adds_a_micro_batch_committed_with_its_record(backend: Backend) -> None:
    lake = backend.lake()
    assert lake.last_commit("raw", "events") is None
    first = lake.append("raw", "events", batches_of(3), commit={"offsets": {"t": {"0": 3}}, "batch": 1})
    second = lake.append("raw", "events", batches_of(2, start=3), commit={"offsets": {"t": {"0": 5}}, "batch": 2})
    assert first.location == second.location == "raw/events" and (first.rows, second.rows) == (3, 2)
    assert first.content_hash != second.content_hash
    assert lake.last_commit("raw", "events") == {"offsets": {"t": {"0": 5}}, "batch": 2}
    assert sorted(lake.read("raw/events").read_all().column("id").to_pylist()) == [0, 1, 2, 3, 4]
    assert lake.exists("raw/events") and lake.current_location("raw", "events") == "raw/events"
    counted = run_sql("SELECT count(*) AS n, max(id) AS top FROM e", {"e": lake.duckdb_input("raw/events")}, object_label="x")
    assert counted.read_all().to_pylist() == [{"n": 5, "top": 4}]
    assert len(lake.parquet_files("raw/events")) == 2


def test_a_token_already_committed_adds_nothing(backend: Backend) -> None:
    lake = backend.lake()
    lake.append("raw", "events", batches_of(3), commit={"batch": 7}, token="7")
    again = lake.append("raw", "events", batches_of(3), commit={"batch": 7}, token="7")
    assert again.rows == 0
    assert lake.read("raw/events").read_all().num_rows == 3
    lake.append("raw", "events", batches_of(1, start=3), commit={"batch": 8}, token="8")
    assert lake.read("raw/events").read_all().num_rows == 4 and lake.last_commit("raw", "events") == {"batch": 8}


def test_columns_widen_across_batches_and_a_misfit_is_refused(backend: Backend) -> None:
    lake = backend.lake()
    narrow = pa.table({"id": pa.array([1], pa.int32())})
    wide = pa.table({"id": pa.array([2], pa.int64()), "extra": ["x"]})
    lake.append("raw", "e", narrow.to_reader(), commit={"n": 1})
    lake.append("raw", "e", wide.to_reader(), commit={"n": 2})
    back = lake.read("raw/e").read_all().sort_by("id")
    assert back.column("id").to_pylist() == [1, 2] and back.column("extra").to_pylist() == [None, "x"]
    with pytest.raises(TerminalError, match=r"do not fit the dataset's"):
        lake.append("raw", "e", pa.table({"id": ["text"]}).to_reader(), commit={"n": 3})
    assert lake.last_commit("raw", "e") == {"n": 2}


def test_a_whole_output_is_not_appended_to(backend: Backend) -> None:
    lake = backend.lake()
    lake.write("raw", "users", batches_of(2), partition_by=["name"])
    with pytest.raises(TerminalError, match=r"written as a whole"):
        lake.append("raw", "users", batches_of(1), commit={})


def test_staged_parts_of_an_engine_are_appended_once_per_token(backend: Backend) -> None:
    lake = backend.lake()
    lake.append("raw", "events", batches_of(2), commit={"batch": 0})
    staged = lake.stage_append("raw", "events")
    fs, path = _filesystem(lake, staged.uri)
    with fs.open_output_stream(f"{path}/part-00000.parquet") as out:
        pq.write_table(pa.Table.from_batches(list(batches_of(3, start=10))), out)
    with fs.open_output_stream(f"{path}/_SUCCESS") as out:
        out.write(b"")
    assert lake.read("raw/events").read_all().num_rows == 2  # staged, not committed: invisible
    written = staged.commit(commit={"batch": 1}, token="1")
    assert written.rows == 3 and lake.last_commit("raw", "events") == {"batch": 1}
    replay = lake.stage_append("raw", "events")
    assert replay.commit(commit={"batch": 1}, token="1").rows == 0
    assert sorted(lake.read("raw/events").read_all().column("id").to_pylist()) == [0, 1, 10, 11, 12]
    empty = lake.stage_append("raw", "events")
    with pytest.raises(TerminalError, match=r"holds no Parquet parts"):
        empty.commit(commit={"batch": 2})


def test_staged_parts_committed_with_a_schema_are_read_in_it(backend: Backend) -> None:
    """An engine that cannot write a type (Spark: timestamps without a zone in microseconds only) commits its parts
    with the schema it means; readers cast the parts to it, and parts that do not cast are refused at the commit."""
    lake = backend.lake()
    meant = pa.schema([("id", pa.int64()), ("at", pa.timestamp("ms"))])
    staged = lake.stage_append("raw", "stamps")
    fs, path = _filesystem(lake, staged.uri)
    with fs.open_output_stream(f"{path}/part-00000.parquet") as out:
        pq.write_table(pa.table({"id": [1, 2], "at": pa.array([1_714_564_800_123_000, None], pa.timestamp("us"))}), out)
    assert staged.commit(commit={"batch": 0}, schema=meant).rows == 2
    table = lake.read("raw/stamps").read_all()
    assert table.schema == meant and table.column("at")[0].value == 1_714_564_800_123
    wrong = lake.stage_append("raw", "stamps")
    fs, path = _filesystem(lake, wrong.uri)
    with fs.open_output_stream(f"{path}/part-00000.parquet") as out:
        pq.write_table(pa.table({"id": [3], "when": pa.array([0], pa.timestamp("us"))}), out)
    with pytest.raises(TerminalError, match=r"the staged parts' columns do not cast to"):
        wrong.commit(commit={"batch": 1}, schema=meant)
    assert lake.read("raw/stamps").read_all().num_rows == 2 and lake.last_commit("raw", "stamps") == {"batch": 0}


def test_kill_9_at_random_moments_keeps_files_and_commit_together(backend: Backend) -> None:
    """An appender killed at any moment leaves exactly the rows its last commit counts, none twice."""
    rng = random.Random(13)
    for _ in range(4):
        child = subprocess.Popen(
            [sys.executable, str(CHILD), json.dumps(backend.spec), "raw", "stream"], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "appended"
        time.sleep(rng.uniform(0.0, 0.5))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    lake = backend.lake(Retention(orphan_grace_s=0.0))
    last = lake.last_commit("raw", "stream")
    assert last is not None
    ids = lake.read("raw/stream").read_all().column("id").to_pylist()
    assert sorted(ids) == list(range(int(last["next"])))
    lake.append("raw", "stream", batches_of(1, start=int(last["next"])), commit={"next": int(last["next"]) + 1})
    assert all(name.count("v=") <= 1 for name in backend.listing())
    versions = {name.split("/")[-2] for name in backend.listing() if name.endswith(".parquet")}
    assert len(versions) == len(lake.parquet_files("raw/stream"))  # abandoned batches pruned


def _filesystem(lake: object, uri: str) -> tuple[object, str]:
    store = lake.store  # type: ignore[attr-defined]
    return store.fs, uri.removeprefix("file://").removeprefix("s3://")


def test_state_is_committed_with_its_batch_and_the_previous_one_removed(backend: Backend) -> None:
    lake = backend.lake()
    assert lake.last_state("raw", "w") is None
    lake.append("raw", "w", batches_of(2), commit={"batch": 1}, state=b"one")
    lake.append("raw", "w", batches_of(0, start=2), commit={"batch": 2}, state=b"two")  # no rows: offsets and state
    assert lake.last_state("raw", "w") == b"two" and lake.last_commit("raw", "w") == {"batch": 2}
    assert lake.read("raw/w").read_all().num_rows == 2
    assert len([name for name in backend.listing() if name.endswith("_state.bin")]) == 1
    appended = lake.appended("raw", "w")
    assert appended is not None and appended.rows == 2 and appended.location == "raw/w"


def test_compaction_rewrites_small_files_in_one_commit_keeping_every_row_once(backend: Backend) -> None:
    lake = backend.lake()
    for batch in range(10):
        state = f"state {batch}".encode()
        lake.append("raw", "e", batches_of(10, start=batch * 10), commit={"batch": batch}, state=state)
    before = lake.appended("raw", "e")
    old_files = lake.parquet_files("raw/e")
    opened = lake.duckdb_input("raw/e")  # a reader of the manifest before the compaction
    done = lake.compact("raw", "e", target_bytes=1 << 20, min_files=4)
    assert (done.files_before, done.files_after, done.rewritten) == (10, 2, 9)  # the last batch is left as it is
    files = lake.parquet_files("raw/e")
    assert len(files) == 2 and files[1] == old_files[-1] and files[0] not in old_files
    assert lake.read("raw/e").read_all().column("id").to_pylist() == list(range(100))  # same rows, same order
    assert lake.appended("raw", "e") == before  # rows and content hash unchanged
    assert lake.last_commit("raw", "e") == {"batch": 9} and lake.last_state("raw", "e") == b"state 9"
    assert opened.to_table().num_rows == 100  # the rewritten files are kept for readers of the old manifest
    again = lake.compact("raw", "e", target_bytes=1 << 20, min_files=2)
    assert again.rewritten == 0  # one big file and the last batch: nothing left to merge
    lake.append("raw", "e", batches_of(5, start=100), commit={"batch": 10})
    assert sorted(lake.read("raw/e").read_all().column("id").to_pylist()) == list(range(105))
    parquet = [name for name in backend.listing() if name.endswith(".parquet")]
    assert len(parquet) == 10 + 1 + 1  # the retired files stay within the grace period
    pruning = backend.lake(Retention(orphan_grace_s=0.0))  # its first append prunes, the grace period over
    pruning.append("raw", "e", batches_of(5, start=105), commit={"batch": 11})
    parquet = [name for name in backend.listing() if name.endswith(".parquet")]
    assert len(parquet) == len(pruning.parquet_files("raw/e")) == 4
    assert sorted(pruning.read("raw/e").read_all().column("id").to_pylist()) == list(range(110))
    assert pruning.last_state("raw", "e") is None and pruning.last_commit("raw", "e") == {"batch": 11}


def test_compaction_merges_runs_of_about_the_target_size_and_leaves_big_files(backend: Backend) -> None:
    lake = backend.lake()
    lake.append("raw", "e", batches_of(20_000), commit={"batch": 0})  # a big file: left as it is
    for batch in range(1, 9):
        lake.append("raw", "e", batches_of(10, start=20_000 + batch * 10), commit={"batch": batch})
    assert lake.compact("raw", "e", target_bytes=4000, min_files=8).rewritten == 0  # 7 small ones: not worth it
    done = lake.compact("raw", "e", target_bytes=4000, min_files=2)
    assert done.rewritten == 7 and 3 <= done.files_after < 9  # batches 1-7 (8 is the last) in runs of 4,000 bytes at most
    ids = lake.read("raw/e").read_all().column("id").to_pylist()
    assert ids == list(range(20_000)) + [i for b in range(1, 9) for i in range(20_000 + b * 10, 20_010 + b * 10)]
