"""The S3 lake against plain pyarrow: write and read MB/s of the same ~1 GB dataset on the same server.

One command (the S3 server is started by ``scripts/servers/s3.sh start`` unless ``SLUICE_TEST_S3_URL`` or
``--url`` names one)::

    python bench/lake_s3.py                       # ~1 GB (Arrow, in memory), 5 rounds
    python bench/lake_s3.py --mb 256 --rounds 5 --json bench/results/lake_s3.json

The dataset (int64 id, float64 value, a low-cardinality string, a high-cardinality string, a timestamp) is
generated once in memory and written, then read back whole, by:

- sluice: ``S3Lake.write`` (streamed Parquet parts, hashed while written, manifest commit, pruning) and
  ``S3Lake.read(...).read_all()`` (manifest, then a pyarrow dataset scan);
- pyarrow: ``pq.write_table`` (zstd, the same row-group size) and ``pq.read_table`` on the same
  ``S3FileSystem`` and server.

Both read through the same machinery: ``S3Lake.read`` streams a ``pyarrow.dataset`` scan (pre-buffered,
coalesced range requests, row groups read ahead concurrently) of the files its manifest lists, which is what
``pq.read_table`` runs on a single path too; Sluice adds one small GET (the manifest) and hands the batches
out in order, so that a huge output is read with bounded memory.

In a round both write (one after the other); then one untimed read (the first read after the writes runs
up to twice as slow, with twice the CPU seconds, whoever does it: timed, it gave the one that went first
more often a ratio near 0.5), then both read twice, A B B A, each read figure being the mean of the two;
rounds alternate which goes first. MB/s is 10^6 bytes of the Arrow data (``Table.nbytes``) per second; CPU seconds
are this process's (user + system, all threads; the S3 server's are not counted). The headline ratio
sluice / pyarrow (goal: at least 0.9) is the median of each round's own ratio: the two ran back to back in
a round, so they shared its conditions, which matters on a shared, noisy machine; the ratio of the medians
and the ratio of median CPU seconds are printed beside it. The bucket is deleted at the end, also on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sluice.lake.parts import ROW_GROUP_ROWS
from sluice.lake.s3 import S3Lake, s3_filesystem

REPO = Path(__file__).resolve().parent.parent
CHUNK_ROWS = 1 << 20


def server_url(given: str) -> str:
    url = given or os.environ.get("SLUICE_TEST_S3_URL", "")
    if url:
        return url
    done = subprocess.run([str(REPO / "scripts/servers/s3.sh"), "start"], capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def dataset(megabytes: int) -> pa.Table:
    """About ``megabytes`` MB of Arrow data, in chunks of CHUNK_ROWS rows (random, so it does not compress to nothing)."""
    rng = np.random.default_rng(12)
    categories = pa.array([f"category-{i}" for i in range(50)])
    batches, total, start = [], 0, 0
    while total < megabytes * 1_000_000:
        ids = np.arange(start, start + CHUNK_ROWS, dtype=np.int64)
        batch = pa.record_batch(
            {
                "id": ids,
                "value": rng.random(CHUNK_ROWS),
                "category": pc.take(categories, pa.array(rng.integers(0, 50, CHUNK_ROWS))),
                "code": pc.cast(pa.array(rng.integers(0, 1 << 62, CHUNK_ROWS)), pa.string()),
                "at": pa.array(1_790_000_000_000_000 + ids * 1000, pa.timestamp("us")),
            }
        )
        batches.append(batch)
        total += batch.nbytes
        start += CHUNK_ROWS
    return pa.Table.from_batches(batches)


def timed(action: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds (this process, all threads) of ``action()``."""
    cpu = time.process_time()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=1024, help="size of the Arrow data in MB (default 1024)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each writing and reading with both (default 5)")
    parser.add_argument("--url", default="", help="http://KEY:SECRET@host:port of the S3 server (default: scripts/servers/s3.sh)")
    parser.add_argument("--json", default="", help="also write the results to this file")
    options = parser.parse_args()

    url = server_url(options.url)
    table = dataset(options.mb)
    size_mb = table.nbytes / 1e6
    print(
        f"dataset: {table.num_rows:,} rows, {size_mb:,.0f} MB of Arrow data; server {urlsplit(url).hostname}:{urlsplit(url).port}"
    )
    fs = s3_filesystem(url)
    bucket = f"sluice-bench-{uuid.uuid4().hex[:8]}"
    fs.create_dir(bucket)
    lake = S3Lake(fs, {}, default_root=bucket)
    plain_path = f"{bucket}/plain/data.parquet"
    keys = ("sluice write", "pyarrow write", "sluice read", "pyarrow read")
    seconds: dict[str, list[float]] = {key: [] for key in keys}
    cpu: dict[str, list[float]] = {key: [] for key in keys}
    stored: dict[str, int] = {}

    def sluice_write() -> None:
        lake.write("raw", "bench", table.to_reader(max_chunksize=64 * 1024))

    def plain_write() -> None:
        pq.write_table(table, plain_path, filesystem=fs, compression="zstd", row_group_size=ROW_GROUP_ROWS)

    def sluice_read() -> None:
        assert lake.read("raw/bench").read_all().num_rows == table.num_rows

    def plain_read() -> None:
        assert pq.read_table(plain_path, filesystem=fs).num_rows == table.num_rows

    jobs = {"sluice write": sluice_write, "pyarrow write": plain_write, "sluice read": sluice_read, "pyarrow read": plain_read}
    try:
        for round_ in range(options.rounds):
            first, second = ("sluice", "pyarrow") if round_ % 2 == 0 else ("pyarrow", "sluice")
            walls: dict[str, list[float]] = {key: [] for key in keys}
            used: dict[str, list[float]] = {key: [] for key in keys}
            for key in (f"{first} write", f"{second} write"):
                gc.collect()
                wall, spent = timed(jobs[key])
                walls[key].append(wall)
                used[key].append(spent)
            jobs[f"{second} read"]()  # untimed: the first read after the writes runs up to twice as slow, whoever does it
            for key in (f"{first} read", f"{second} read", f"{second} read", f"{first} read"):
                gc.collect()
                wall, spent = timed(jobs[key])
                walls[key].append(wall)
                used[key].append(spent)
            for key in keys:
                seconds[key].append(statistics.mean(walls[key]))
                cpu[key].append(statistics.mean(used[key]))
            line = ", ".join(f"{key} {size_mb / seconds[key][-1]:,.0f} MB/s ({cpu[key][-1]:.1f} CPU s)" for key in keys)
            print(f"round {round_ + 1}: {line}", flush=True)
        stored["sluice"] = sum(
            info.size for info in fs.get_file_info(pafs.FileSelector(f"{bucket}/raw/bench", recursive=True)) if info.is_file
        )
        stored["pyarrow"] = fs.get_file_info(plain_path).size
    finally:
        _delete_bucket(url, bucket)

    medians = {key: size_mb / statistics.median(values) for key, values in seconds.items()}
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"stored Parquet: sluice {stored['sluice'] / 1e6:,.0f} MB (2 versions kept), pyarrow {stored['pyarrow'] / 1e6:,.0f} MB")
    print(f"load average now {load}")
    for what in ("write", "read"):
        paired = statistics.median(p / s for s, p in zip(seconds[f"sluice {what}"], seconds[f"pyarrow {what}"], strict=True))
        ratio = medians[f"sluice {what}"] / medians[f"pyarrow {what}"]
        cpu_ratio = statistics.median(cpu[f"pyarrow {what}"]) / statistics.median(cpu[f"sluice {what}"])
        print(
            f"{what}: sluice {medians[f'sluice {what}']:,.0f} MB/s, pyarrow {medians[f'pyarrow {what}']:,.0f} MB/s "
            f"(median of {options.rounds}); ratio {paired:.2f}x (median of the rounds' ratios; goal >= 0.9x); "
            f"ratio of medians {ratio:.2f}x; CPU seconds {statistics.median(cpu[f'sluice {what}']):.1f} vs "
            f"{statistics.median(cpu[f'pyarrow {what}']):.1f} ({cpu_ratio:.2f}x)"
        )
    if options.json:
        result = {
            "rows": table.num_rows,
            "arrow_mb": size_mb,
            "seconds": seconds,
            "cpu_seconds": cpu,
            "mb_per_s_median": medians,
            "stored_bytes": stored,
        }
        Path(options.json).parent.mkdir(parents=True, exist_ok=True)
        Path(options.json).write_text(json.dumps(result, indent=2), encoding="utf-8")


def _delete_bucket(url: str, bucket: str) -> None:
    parts = urlsplit(url)
    fs = pafs.S3FileSystem(
        access_key=unquote(parts.username or ""),
        secret_key=unquote(parts.password or ""),
        endpoint_override=f"{parts.hostname}:{parts.port}",
        scheme=parts.scheme,
        region="us-east-1",
        allow_bucket_deletion=True,
    )
    with contextlib.suppress(OSError):
        fs.delete_dir(bucket)


if __name__ == "__main__":
    sys.exit(main())
