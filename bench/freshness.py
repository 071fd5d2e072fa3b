"""What deciding a file source's freshness costs: the old stat-only fingerprint against content hashes.

A file of ``--size-mb`` MiB of random bytes (default 1024, i.e. 1 GiB) is written and synced in the
system temporary folder (``--dir`` to choose), then fingerprinted by:

- stat: the old ``FileSource.input_fingerprint`` (path, size, mtime_ns hashed with BLAKE2b); it cannot
  see a rewrite that keeps the size and the modification time;
- xxh3_128: the content hash Sluice uses now (``sluice.connectors.files.content_digest``: the ``xxhash``
  package through ``hashlib.file_digest``);
- blake2b: ``hashlib.file_digest`` with BLAKE2b (16-byte digest), the standard-library alternative.

Each is timed ``--repeat`` times "cold-ish" (the file's pages dropped from the page cache with
``posix_fadvise(POSIX_FADV_DONTNEED)`` just before; the disk or a host-side cache may still help, hence
"-ish") and ``--repeat`` times warm (the file read once just before). Best and median seconds and GB/s
(10^9 bytes per second) are printed. The file is removed at the end, also on failure.

    python bench/freshness.py
    python bench/freshness.py --size-mb 256 --repeat 5 --json bench/results/freshness.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sluice.connectors.files import content_digest

BLOCK = 1 << 20


def stat_only(path: Path) -> str:
    """The fingerprint FileSource used before content hashing."""
    stat = path.stat()
    return hashlib.blake2b(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode(), digest_size=16).hexdigest()


def blake2b_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.blake2b(digest_size=16)).hexdigest()


METHODS: dict[str, Callable[[Path], str]] = {"stat": stat_only, "xxh3_128": content_digest, "blake2b": blake2b_digest}


def write_file(path: Path, size_mb: int) -> None:
    with path.open("wb") as handle:
        for _ in range(size_mb):
            handle.write(os.urandom(BLOCK))
        handle.flush()
        os.fsync(handle.fileno())


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(method: Callable[[Path], str], path: Path) -> float:
    started = time.perf_counter()
    method(path)
    return time.perf_counter() - started


def measure(path: Path, repeat: int) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {name: {"cold": [], "warm": []} for name in METHODS}
    for _ in range(repeat):
        for name, method in METHODS.items():
            drop_cache(path)
            results[name]["cold"].append(timed(method, path))
            content_digest(path)  # bring the whole file into the page cache
            results[name]["warm"].append(timed(method, path))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="file size in MiB (default 1024 = 1 GiB)")
    parser.add_argument("--repeat", type=int, default=3, help="timings per method and cache state (default 3)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the file is written")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    size = args.size_mb * BLOCK
    free = os.statvfs(args.dir)
    if free.f_bavail * free.f_frsize < 2 * size:
        print(f"not enough free space in {args.dir} for a {args.size_mb} MiB file (want twice that free)", file=sys.stderr)
        return 2
    handle, name = tempfile.mkstemp(prefix="sluice-freshness-", suffix=".bin", dir=args.dir)
    os.close(handle)
    path = Path(name)
    try:
        started = time.perf_counter()
        write_file(path, args.size_mb)
        print(f"file: {path}, {size:,} bytes ({args.size_mb} MiB), written in {time.perf_counter() - started:.1f} s")
        results = measure(path, args.repeat)
    finally:
        path.unlink(missing_ok=True)
    print(f"{'method':<10} {'cache':<9} {'best s':>9} {'median s':>9} {'best GB/s':>10}")
    for method, by_cache in results.items():
        for cache, seconds in by_cache.items():
            best, median = min(seconds), statistics.median(seconds)
            rate = "reads no data" if method == "stat" else f"{size / best / 1e9:.2f}"
            label = "cold-ish" if cache == "cold" else cache
            print(f"{method:<10} {label:<9} {best:>9.4f} {median:>9.4f} {rate:>10}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {"bytes": size, "repeat": args.repeat, "seconds": results}
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
