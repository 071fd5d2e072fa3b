"""Change-data capture, MariaDB -> PostgreSQL: Sluice against pg_chameleon and a raw SELECT | COPY, same run.

Four figures (bench/README.md says how each is taken):

1. **apply rate**: ``--changes`` row changes (55 % inserts, 30 % updates, 15 % deletes over three tables with
   bigint keys, varchar, decimal, int, enum, datetime(6), timestamp(6), text) written into MariaDB while no
   replicator runs, then drained: ``sluice sync --once`` (wall time of the process) and pg_chameleon
   ``start_replica`` (until the marker row written after the workload is in the target); rows/s and the ratio.
2. **latency**: a paced writer inserts ``--rate`` rows/s for ``--seconds`` while ``sluice sync`` runs (embedded bus,
   then Kafka; pg_chameleon too); a poller stamps when each row appears in PostgreSQL; p50/p99/max.
3. **snapshot**: a ``--snapshot-rows`` table copied by ``sluice sync --once`` (initial snapshot) and by
   ``mariadb --batch --raw --quick -e SELECT | psql -c COPY``; rows/s and the ratio.
4. **memory**: one source transaction of ``--mem-rows`` rows applied by ``sluice sync --once --processes 1``
   (capture and apply in one process, so its peak RSS is the whole sync's).

``--partitions N`` runs the apply-rate figure on Kafka with ``partitions: N`` in two timed steps, capture alone
(``--role capture --once``) then apply alone (``--role apply --once`` in ``--apply-processes`` processes), so the
apply rows/s of 1 and of N partitions can be set side by side (docs/cdc/partitions.md).

    python bench/cdc.py                                  # full run, about 10 minutes
    python bench/cdc.py --changes 100000 --snapshot-rows 500000 --seconds 10 --mem-rows 100000
    python bench/cdc.py --only throughput --json bench/results/cdc.json
    python bench/cdc.py --only throughput --no-peers --partitions 4 --apply-processes 2 --changes 300000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cdc_sluice as sl  # noqa: E402
import cdc_workload as wl  # noqa: E402
from cdc_chameleon import Chameleon  # noqa: E402
from cdc_chameleon import version as chameleon_version  # noqa: E402
from orchestration import percentile  # noqa: E402

PHASES = ("throughput", "latency", "snapshot", "memory")
SRC_CHANGES, SRC_SNAP, SRC_MEM = "bench_cdc", "bench_snap", "bench_mem"
SRC_LAT = {"sluice-embedded": "bench_lat_emb", "sluice-kafka": "bench_lat_kafka", "pg_chameleon": "bench_lat_pgch"}
CHANGE_TABLES = [*wl.CHANGE_TABLES, "bench_marker"]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, alive: Callable[[], bool] = lambda: True) -> float:
    """Poll ``check`` every 20 ms; seconds waited. SystemExit-free: raises TimeoutError or RuntimeError (process died)."""
    started = time.perf_counter()
    while not check():
        if not alive():
            raise RuntimeError(f"the replicator exited while waiting for {what}")
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"{what} not seen within {timeout_s:.0f} s")
        time.sleep(0.02)
    return time.perf_counter() - started


# -- 1. apply rate ------------------------------------------------------------------------------------------


def throughput(args: argparse.Namespace, work: Path, chameleon: Chameleon | None, sluice_error: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sync: dict[str, Any] = {"batch_rows": args.batch_rows}
    kafka = None
    if args.partitions is not None:
        kafka = args.kafka + ("&" if "?" in args.kafka else "?") + f"namespace={args.prefix}-{uuid.uuid4().hex[:8]}"
        sync["partitions"] = args.partitions
    folder = sl.write_project(work / "throughput", SRC_CHANGES, CHANGE_TABLES, "bench_sluice", bus=kafka, **sync)
    try:
        return _throughput(args, folder, chameleon, sluice_error, out)
    finally:
        if kafka and not args.keep:
            _delete_kafka_namespace(kafka)


def _throughput(
    args: argparse.Namespace, folder: Path, chameleon: Chameleon | None, sluice_error: str, out: dict[str, Any]
) -> dict[str, Any]:
    if not sluice_error:
        try:
            out["sluice_idle_once_s"] = sl.once(folder).seconds  # snapshot of the empty tables: start-up cost
        except sl.SluiceUnavailable as exc:
            sluice_error = str(exc)
    say(f"writing {args.changes:,} row changes into MariaDB {SRC_CHANGES}")
    counts = wl.write_changes(SRC_CHANGES, args.changes, args.txn_rows)
    wl.write_marker(SRC_CHANGES, 1)
    expected = wl.source_fingerprints(SRC_CHANGES)
    out["workload"] = {
        "changes": counts.total, "insert": counts.insert, "update": counts.update, "delete": counts.delete,
        "statements": counts.statements, "txn_rows": args.txn_rows, "write_s": counts.seconds,
    }  # fmt: skip
    if chameleon is not None:
        say("pg_chameleon: draining")
        started = time.perf_counter()
        chameleon.start()
        try:
            with wl.pg_conn() as pg:
                wait_for(lambda: wl.has_marker(pg, "bench_pgch", 1), args.timeout, "pg_chameleon's marker", chameleon.alive)
                seconds = time.perf_counter() - started
                same = wl.target_fingerprints(pg, "bench_pgch") == expected
            out["pg_chameleon"] = {"seconds": seconds, "rows_per_s": counts.total / seconds, "tables_equal": same}
        except (TimeoutError, RuntimeError) as exc:
            out["pg_chameleon"] = {"error": f"{exc}\n{chameleon.log_tail()}"}
        finally:
            chameleon.stop()
    if sluice_error:
        out["sluice"] = {"error": sluice_error}
        return out
    if args.partitions is not None:
        return _split_drain(args, folder, counts.total, expected, out)
    say("sluice: draining (sluice sync --once)")
    try:
        result = sl.once(folder, args.timeout)
        with wl.pg_conn() as pg:
            same = wl.target_fingerprints(pg, "bench_sluice") == expected
        out["sluice"] = {
            "seconds": result.seconds, "rows_per_s": counts.total / result.seconds, "tables_equal": same,
            "peak_rss_mb": result.peak_rss_bytes / 2**20, "applied": sl.applied(result.status), "cpu_s": result.cpu_s,
        }  # fmt: skip
    except sl.SluiceUnavailable as exc:
        out["sluice"] = {"error": str(exc)}
    if "rows_per_s" in out.get("sluice", {}) and "rows_per_s" in out.get("pg_chameleon", {}):
        out["ratio_sluice_pg_chameleon"] = out["sluice"]["rows_per_s"] / out["pg_chameleon"]["rows_per_s"]
    return out


def _split_drain(args: argparse.Namespace, folder: Path, total: int, expected: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Kafka, ``partitions: N``: capture alone fills the bus, then ``--apply-processes`` apply processes drain it."""
    processes = args.apply_processes
    try:
        say(f"sluice (Kafka, partitions: {args.partitions}): capture alone (sluice sync --role capture --once)")
        capture = sl.once(folder, args.timeout, role="capture")
        say(f"sluice: apply alone in {processes} process(es) (sluice sync --role apply --once)")
        apply = sl.once(folder, args.timeout, role="apply", processes=processes)
        with wl.pg_conn() as pg:
            same = wl.target_fingerprints(pg, "bench_sluice") == expected
        out["sluice_capture"] = {"seconds": capture.seconds, "rows_per_s": total / capture.seconds, "cpu_s": capture.cpu_s}
        out["sluice_apply"] = {
            "seconds": apply.seconds, "rows_per_s": total / apply.seconds, "cpu_s": apply.cpu_s, "tables_equal": same,
            "partitions": args.partitions, "processes": processes, "applied": sl.applied(apply.status),
        }  # fmt: skip
    except sl.SluiceUnavailable as exc:
        out["sluice_apply"] = {"error": str(exc)}
    return out


# -- 2. latency ---------------------------------------------------------------------------------------------


def _paced(args: argparse.Namespace, database: str, schema: str, alive: Callable[[], bool]) -> dict[str, Any]:
    """Warm up (a marker row must come through), then the paced writer and the poller; latency figures."""
    with wl.pg_conn() as pg:
        wl.write_marker(database, 1)
        warmup = wait_for(lambda: wl.has_marker(pg, schema, 1), args.timeout, "the warm-up marker", alive)
    poller = wl.Poller(schema)
    writer = wl.PacedWriter(database, args.rate, args.seconds)
    poller.start()
    writer.start()
    writer.join()
    deadline = time.perf_counter() + 30
    while len(poller.seen) < writer.rows and time.perf_counter() < deadline and alive():
        time.sleep(0.05)
    poller.stop()
    lat, missing = wl.latencies(writer, poller)
    span = writer.sent[-1][2] - writer.sent[0][2] if len(writer.sent) > 1 else float("nan")
    return {
        "warmup_s": warmup, "rows": writer.rows, "missing": missing, "write_rate": writer.rows / span if span else 0,
        "writer_behind_max_s": writer.behind_s, "polls": poller.polls,
        "p50_ms": percentile(lat, 0.50) * 1000, "p99_ms": percentile(lat, 0.99) * 1000, "max_ms": max(lat, default=0) * 1000,
    }  # fmt: skip


def _delete_kafka_namespace(url: str) -> None:
    """Delete the topics and consumer groups the Kafka run made (bench/kafka.py's helper)."""
    from kafka import delete_namespace
    from sluice.bus.registry import open_bus

    bus = open_bus(url)
    try:
        delete_namespace(bus)
    finally:
        bus.close()


def latency(args: argparse.Namespace, work: Path, chameleon: Chameleon | None, sluice_error: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kafka = args.kafka + ("&" if "?" in args.kafka else "?") + f"namespace=bench-{uuid.uuid4().hex[:8]}"
    buses = {"sluice-embedded": None, "sluice-kafka": kafka}
    for name, bus in buses.items():
        if sluice_error:
            out[name] = {"error": sluice_error}
            continue
        if bus and args.no_kafka:
            continue
        database, schema = SRC_LAT[name], SRC_LAT[name].replace("bench_lat", "bench_sluice_lat")
        wl.reset_mysql(database, wl.LATENCY_DDL)
        folder = sl.write_project(work / name, database, ["ticks", "bench_marker"], schema, bus=bus)
        say(f"{name}: {args.rate:,} rows/s for {args.seconds:.0f} s")
        try:
            with sl.background(folder) as process:
                out[name] = _paced(args, database, schema, lambda: process.poll() is None)
            out[name]["lag_s_status"] = [t.get("lag_s") for t in (sl.read_status(folder) or {}).get("tables", [])]
        except (TimeoutError, RuntimeError) as exc:
            out[name] = {"error": f"{exc}\n{sl.log_tail(folder)}"}
        finally:
            if bus:
                _delete_kafka_namespace(bus)
    if chameleon is not None:
        say(f"pg_chameleon: {args.rate:,} rows/s for {args.seconds:.0f} s")
        chameleon.start()
        try:
            out["pg_chameleon"] = _paced(args, SRC_LAT["pg_chameleon"], "bench_pgch_lat", chameleon.alive)
        except (TimeoutError, RuntimeError) as exc:
            out["pg_chameleon"] = {"error": f"{exc}\n{chameleon.log_tail()}"}
        finally:
            chameleon.stop()
    return out


# -- 3. snapshot and 4. memory ------------------------------------------------------------------------------


def _snapshot_check(schema: str) -> tuple[Any, ...]:
    with wl.pg_conn() as pg:
        row = pg.execute(
            f"SELECT count(*), sum(id), sum(price), sum(stock), count(description), sum(length(description)), "
            f"count(updated_at) FROM {schema}.items"
        ).fetchone()
    return tuple(row or ())


def snapshot(args: argparse.Namespace, work: Path, sluice_error: str) -> dict[str, Any]:
    say(f"filling MariaDB {SRC_SNAP}.items with {args.snapshot_rows:,} rows")
    out: dict[str, Any] = {"rows": args.snapshot_rows, "fill_s": wl.fill_snapshot_table(SRC_SNAP, args.snapshot_rows)}
    say("raw: mariadb --batch --raw --quick | psql COPY")
    raw_s = wl.raw_copy(SRC_SNAP, "bench_raw")
    out["raw"] = {"seconds": raw_s, "rows_per_s": args.snapshot_rows / raw_s, "check": _snapshot_check("bench_raw")}
    if sluice_error:
        out["sluice"] = {"error": sluice_error}
        return out
    say("sluice: snapshot (sluice sync --once)")
    folder = sl.write_project(work / "snapshot", SRC_SNAP, ["items"], "bench_sluice_snap", chunk_rows=args.chunk_rows)
    try:
        result = sl.once(folder, args.timeout)
        check = _snapshot_check("bench_sluice_snap")
        out["sluice"] = {
            "seconds": result.seconds, "rows_per_s": args.snapshot_rows / result.seconds, "check": check,
            "same_as_raw": check == out["raw"]["check"], "peak_rss_mb": result.peak_rss_bytes / 2**20,
            "cpu_s": result.cpu_s,
        }  # fmt: skip
        out["ratio_sluice_raw"] = out["sluice"]["rows_per_s"] / out["raw"]["rows_per_s"]
    except sl.SluiceUnavailable as exc:
        out["sluice"] = {"error": str(exc)}
    return out


def memory(args: argparse.Namespace, work: Path, sluice_error: str) -> dict[str, Any]:
    if sluice_error:
        return {"error": sluice_error}
    wl.reset_mysql(SRC_MEM, wl.SNAPSHOT_DDL)
    folder = sl.write_project(work / "memory", SRC_MEM, ["items"], "bench_sluice_mem")
    try:
        sl.once(folder, args.timeout)  # the (empty) snapshot and a stored position
        say(f"memory: one transaction of {args.mem_rows:,} rows, then sluice sync --once")
        with wl.my_connect(SRC_MEM) as conn, conn.cursor() as cur:
            started = time.perf_counter()
            cur.execute(wl._SNAP_INSERT.format(lo=1, hi=args.mem_rows))
            write_s = time.perf_counter() - started
        result = sl.once(folder, args.timeout, one_process=True)
    except sl.SluiceUnavailable as exc:
        return {"error": str(exc)}
    with wl.pg_conn() as pg:
        row = pg.execute("SELECT count(*) FROM bench_sluice_mem.items").fetchone()
    return {
        "rows": args.mem_rows, "write_s": write_s, "seconds": result.seconds, "rows_per_s": args.mem_rows / result.seconds,
        "peak_rss_mb": result.peak_rss_bytes / 2**20, "target_rows": row[0] if row else None, "cpu_s": result.cpu_s,
    }  # fmt: skip


# -- report -------------------------------------------------------------------------------------------------


def _rate(entry: dict[str, Any]) -> str:
    if "error" in entry:
        return "not measured: " + entry["error"].strip().splitlines()[0][:160]
    cpu = f", {entry['cpu_s']:.1f} s CPU" if "cpu_s" in entry else ""
    return f"{entry['rows_per_s']:>10,.0f} rows/s  ({entry['seconds']:.1f} s{cpu})"


def report(results: dict[str, Any]) -> None:
    print(f"versions: {results['versions']}")
    print(f"load average (1 min) at start {results['load_start']:.1f}, at end {results['load_end']:.1f} on {os.cpu_count()} CPUs")
    if t := results.get("throughput"):
        w = t["workload"]
        print(f"\napply rate: {w['changes']:,} row changes ({w['insert']:,} inserts, {w['update']:,} updates, "
              f"{w['delete']:,} deletes; {w['txn_rows']} rows per transaction), written in {w['write_s']:.1f} s")  # fmt: skip
        for name in ("sluice", "sluice_capture", "sluice_apply", "pg_chameleon"):
            if name in t:
                equal = t[name].get("tables_equal")
                print(f"  {name:<14} {_rate(t[name])}" + ("" if equal is None else f"  tables equal: {equal}"))
        if "partitions" in t.get("sluice_apply", {}):
            a = t["sluice_apply"]
            print(f"  (Kafka, partitions: {a['partitions']}, {a['processes']} apply process(es); each step's wall time"
                  " includes its process start and group join)")  # fmt: skip
        if "sluice_idle_once_s" in t:
            where = "before the workload, not included" if "sluice_apply" in t else "included above"
            print(f"  (sluice sync --once on an idle source: {t['sluice_idle_once_s']:.1f} s, {where})")
        if "ratio_sluice_pg_chameleon" in t:
            print(f"  ratio sluice/pg_chameleon: {t['ratio_sluice_pg_chameleon']:.2f}  (aim >= 5; sluice aim >= 50,000 rows/s)")
    if lat := results.get("latency"):
        print(f"\nlatency, commit to visible in PostgreSQL, at {results['args']['rate']:,} rows/s for "
              f"{results['args']['seconds']:.0f} s (aim p99 <= 1,000 ms):")  # fmt: skip
        for name, entry in lat.items():
            if "error" in entry:
                print(f"  {name:<16} not measured: {entry['error'].strip().splitlines()[0][:160]}")
                continue
            print(f"  {name:<16} p50 {entry['p50_ms']:>7.1f} ms  p99 {entry['p99_ms']:>7.1f} ms  max {entry['max_ms']:>7.1f} ms"
                  f"  ({entry['rows']:,} rows at {entry['write_rate']:,.0f}/s, {entry['missing']} missing)")  # fmt: skip
    if snap := results.get("snapshot"):
        print(f"\nsnapshot of {snap['rows']:,} rows:")
        print(f"  raw SELECT|COPY {_rate(snap['raw'])}")
        print(f"  sluice          {_rate(snap['sluice'])}")
        if "ratio_sluice_raw" in snap:
            print(f"  ratio sluice/raw: {snap['ratio_sluice_raw']:.2f}  same rows: {snap['sluice']['same_as_raw']}")
    if mem := results.get("memory"):
        if "error" in mem:
            print(f"\nmemory: not measured: {mem['error'].strip().splitlines()[0][:160]}")
        else:
            print(f"\nmemory: one transaction of {mem['rows']:,} rows applied in {mem['seconds']:.1f} s, "
                  f"peak RSS {mem['peak_rss_mb']:,.0f} MB, one process (aim < 1,024 MB), "
                  f"{mem['target_rows']:,} rows in target")  # fmt: skip


def use_prefix(prefix: str) -> None:
    """Name the MariaDB sources and the PostgreSQL database ``<prefix>_...`` instead of ``bench_...``."""
    global SRC_CHANGES, SRC_SNAP, SRC_MEM
    if prefix == "bench":
        return
    SRC_CHANGES, SRC_SNAP, SRC_MEM = (name.replace("bench", prefix, 1) for name in (SRC_CHANGES, SRC_SNAP, SRC_MEM))
    for key, name in SRC_LAT.items():
        SRC_LAT[key] = name.replace("bench", prefix, 1)
    wl.PG_DATABASE = wl.PG_DATABASE.replace("bench", prefix, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--changes", type=int, default=1_000_000, help="row changes of the apply-rate workload")
    parser.add_argument("--txn-rows", type=int, default=500, help="rows per source transaction in that workload")
    parser.add_argument("--batch-rows", type=int, default=20_000, help="Sluice's batch_rows for that workload")
    parser.add_argument("--rate", type=int, default=10_000, help="rows/s of the paced writer (latency)")
    parser.add_argument("--seconds", type=float, default=30, help="seconds of paced writing (latency)")
    parser.add_argument("--snapshot-rows", type=int, default=5_000_000)
    parser.add_argument("--chunk-rows", type=int, default=50_000, help="Sluice's chunk_rows for the snapshot")
    parser.add_argument("--mem-rows", type=int, default=1_000_000, help="rows of the one big source transaction")
    parser.add_argument("--kafka", default=os.environ.get("SLUICE_TEST_KAFKA_URL") or "kafka://127.0.0.1:29092")
    parser.add_argument("--no-kafka", action="store_true")
    parser.add_argument("--partitions", type=int, help="apply rate on Kafka with partitions: N, capture then apply timed apart")
    parser.add_argument("--apply-processes", type=int, default=1, help="apply processes with --partitions")
    parser.add_argument("--prefix", default="bench", help="prefix of the databases and schemas (runs side by side)")
    parser.add_argument("--no-peers", action="store_true", help="skip pg_chameleon")
    parser.add_argument("--chameleon-batch", type=int, default=10_000, help="pg_chameleon replica_batch_size and replay_max_rows")
    parser.add_argument("--only", action="append", choices=PHASES, help="run only this phase (repeatable)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds any one drain may take")
    parser.add_argument("--keep", action="store_true", help="keep the bench_* databases (and the Kafka topics) afterwards")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    use_prefix(args.prefix)
    phases = args.only or list(PHASES)
    work = Path(tempfile.mkdtemp(prefix="bench_cdc_"))
    try:
        sl.check_cli()
        sluice_error = ""
    except sl.SluiceUnavailable as exc:
        sluice_error = str(exc)
    results: dict[str, Any] = {"args": vars(args) | {"json": str(args.json)}, "versions": {}, "load_start": os.getloadavg()[0]}
    chameleon = None
    try:
        wl.reset_pg()
        wl.reset_mysql(SRC_CHANGES, wl.CHANGE_DDL)
        wl.reset_mysql(SRC_LAT["pg_chameleon"], wl.LATENCY_DDL)
        if not args.no_peers and ({"throughput", "latency"} & set(phases)):
            chameleon = Chameleon(
                {SRC_CHANGES: "bench_pgch", SRC_LAT["pg_chameleon"]: "bench_pgch_lat"}, batch_rows=args.chameleon_batch
            )
            results["versions"]["pg_chameleon"] = chameleon_version()
            say("pg_chameleon: create_replica_schema, add_source, init_replica")
            chameleon.prepare()
        with wl.my_connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT version()")
            results["versions"]["mariadb"] = cur.fetchone()[0]  # type: ignore[index]
        with wl.pg_conn() as pg:
            results["versions"]["postgresql"] = pg.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        if "throughput" in phases:
            results["throughput"] = throughput(args, work, chameleon, sluice_error)
        if "latency" in phases:
            results["latency"] = latency(args, work, chameleon, sluice_error)
        if chameleon is not None:
            chameleon.cleanup()
            chameleon = None
        if "snapshot" in phases:
            results["snapshot"] = snapshot(args, work, sluice_error)
        if "memory" in phases:
            results["memory"] = memory(args, work, sluice_error)
    finally:
        if chameleon is not None:
            chameleon.cleanup()
        if not args.keep:
            wl.drop_mysql(SRC_CHANGES, SRC_SNAP, SRC_MEM, *SRC_LAT.values())
            wl.drop_pg()
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"kept: the generated projects in {work}")
    results["load_end"] = os.getloadavg()[0]
    report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
