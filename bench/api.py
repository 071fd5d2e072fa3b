"""The data API under load: GraphQL by primary key and a 20-row list with a nested relation, Sluice next to PostGraphile.

Same PostgreSQL database (``apibench``: 1,000 authors, 100,000 articles, bench/api_data.py), same machine, same
run. PostGraphile 4 (npm, its CLI on the machine's Node.js, production settings; bench/peers/setup_postgraphile.sh) and
``sluice serve`` with an ``api:`` section over the same two tables both listen on loopback, both with their
per-request log off (PostGraphile's ``--disable-query-log``, Sluice's ``api.log_requests: false``; the metrics still
count); wrk (bench/api_load.py, bench/api_wrk.lua) sends each query with a different id (or category) per request,
``--connections`` in flight.
Sluice's REST (``/rest``, PostgREST's conventions) is measured on the same two queries (no peer: PostGraphile
serves GraphQL only): ``GET /rest/articles?id=eq.N&select=id,titre`` and ``GET /rest/articles?select=id,titre,
author:authors(name)&category=eq.C&order=published_at.desc&limit=20``, its answers checked like GraphQL's.

Before any timing, both servers' answers are compared with PostgreSQL's own for a sample of ids and for every
category (the comparison is only fair if they return the same rows). Then, per round, per query, the servers
take turns (the first one alternates between rounds): ``--warmup`` seconds unrecorded, then ``--seconds``
measured. Printed per server and query: the median over rounds of requests/s, p50 and p99 (ms), the range of
requests/s, and the CPU cores used by the server process, by the PostgreSQL backends of ``apibench`` and by wrk;
then Sluice/PostGraphile and the aims of issue 11 (primary key: >= 2,000 requests/s with p99 <= 25 ms; both
queries: >= 1.0x PostGraphile's requests/s), each met or not met.

    python bench/api.py                                   # about 5 minutes once installed (GraphQL and REST)
    python bench/api.py --rounds 1 --seconds 5 --warmup 2 # quick
    python bench/api.py --json bench/results/api.json
    python bench/api.py --sluice-serve-args="--workers 2" # when sluice serve takes extra options

When ``sluice serve`` does not start with the generated project or serves no GraphQL at /graphql, the Sluice
lines say why and PostGraphile is still measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import api_data  # noqa: E402
import api_soak  # noqa: E402
from api_load import Measure, PgWatch, run_wrk, wrk_binary  # noqa: E402
from api_servers import (  # noqa: E402
    Queries,
    Server,
    ServerUnavailable,
    answer_data,
    install_postgraphile,
    node_version,
    postgraphile,
    postgraphile_queries,
    postgraphile_version,
    sluice_queries,
    sluice_serve,
    write_sluice_project,
)
from server import free_port  # noqa: E402

QUERIES = ("by_pk", "list")
REST_QUERIES = ("rest_by_pk", "rest_list")
TITLES = {
    "by_pk": "by primary key (article_by_pk / articleById)",
    "list": "20 articles of a category, newest first, with the author's name",
    "rest_by_pk": "REST by primary key (Sluice only): GET /rest/articles?id=eq.N&select=id,titre",
    "rest_list": "REST, the same list (Sluice only): GET /rest/articles?select=id,titre,author:authors(name)"
    "&category=eq.C&order=published_at.desc&limit=20",
}
REST_BY_PK = "/rest/articles?id=eq.{key}&select=id,titre"
REST_LIST = "/rest/articles?select=id,titre,author:authors(name)&category=eq.{category}&order=published_at.desc&limit=20"
AIM_PK_RPS = 2000.0
AIM_PK_P99_MS = 25.0
AIM_RATIO = 1.0


# --- correctness -----------------------------------------------------------------------------------


def expected_rows(dataset: api_data.Dataset, keys: list[int], categories: list[str]) -> tuple[dict[int, Any], dict[str, Any]]:
    """PostgreSQL's own answers: ``{id: (id, titre) | None}`` and ``{category: [(id, titre, author name), ...]}``."""
    with psycopg.connect(api_data.database_url()) as conn:
        by_pk: dict[int, Any] = {}
        for key in keys:
            row = conn.execute("SELECT id::text, titre FROM articles WHERE id = %s", (key,)).fetchone()
            by_pk[key] = None if row is None else tuple(row)
        lists: dict[str, Any] = {}
        for category in categories:
            rows = conn.execute(
                "SELECT a.id::text, a.titre, au.name FROM articles a JOIN authors au ON au.id = a.author_id "
                "WHERE a.category = %s ORDER BY a.published_at DESC LIMIT 20",
                (category,),
            ).fetchall()
            lists[category] = [tuple(r) for r in rows]
    return by_pk, lists


def check_answers(server: Server, queries: Queries, by_pk: dict[int, Any], lists: dict[str, Any]) -> dict[str, str | None]:
    """Per query: None when every sampled answer equals PostgreSQL's, else the first difference."""
    problems: dict[str, str | None] = {"by_pk": None, "list": None}
    for key, want in by_pk.items():
        got = queries.by_pk_row(answer_data(server, queries.by_pk, queries.by_pk_variables(key)))
        if got != want:
            problems["by_pk"] = f"id {key}: got {got}, PostgreSQL has {want}"
            break
    for category, rows in lists.items():
        got_rows = queries.list_rows(answer_data(server, queries.listing, queries.list_variables(category)))
        if got_rows != rows:
            problems["list"] = (
                f"category {category}: got {got_rows[:2]}..., PostgreSQL has {rows[:2]}... ({len(got_rows)} vs {len(rows)} rows)"
            )
            break
    return problems


def check_rest(server: Server, by_pk: dict[int, Any], lists: dict[str, Any]) -> dict[str, str | None]:
    """Per REST query: None when every sampled answer equals PostgreSQL's, else the first difference (or the
    status when ``/rest`` does not answer 200)."""
    problems: dict[str, str | None] = {"rest_by_pk": None, "rest_list": None}

    def get(path: str) -> Any:
        answer = httpx.get(server.url + path, headers={"Accept": "application/json"}, timeout=30)
        if answer.status_code != 200:
            raise ServerUnavailable(f"GET {path} answered {answer.status_code}: {answer.text[:200]}")
        return answer.json()

    try:
        for key, want in by_pk.items():
            got = [(str(r["id"]), r["titre"]) for r in get(REST_BY_PK.format(key=key))]
            if got != ([] if want is None else [want]):
                problems["rest_by_pk"] = f"id {key}: got {got}, PostgreSQL has {want}"
                break
    except ServerUnavailable as exc:
        problems["rest_by_pk"] = str(exc)
    try:
        for category, rows in lists.items():
            got_rows = [(str(r["id"]), r["titre"], r["author"]["name"]) for r in get(REST_LIST.format(category=category))]
            if got_rows != rows:
                problems["rest_list"] = f"category {category}: got {got_rows[:2]}..., PostgreSQL has {rows[:2]}..."
                break
    except ServerUnavailable as exc:
        problems["rest_list"] = str(exc)
    return problems


# --- timing ----------------------------------------------------------------------------------------


def write_bodies(folder: Path, name: str, queries: Queries, keys: list[int], categories: list[str]) -> dict[str, Path]:
    """One file of request bodies per query, the same keys in the same order for every server."""
    files = {}
    for query, document, variables in (
        ("by_pk", queries.by_pk, [queries.by_pk_variables(k) for k in keys]),
        ("list", queries.listing, [queries.list_variables(c) for c in categories]),
    ):
        path = folder / f"{name}-{query}.jsonl"
        path.write_text("".join(json.dumps({"query": document, "variables": v}) + "\n" for v in variables))
        files[query] = path
    if name == "sluice":  # REST: one "GET path" line per request (bench/api_wrk.lua)
        for query, lines in (
            ("rest_by_pk", [REST_BY_PK.format(key=k) for k in keys]),
            ("rest_list", [REST_LIST.format(category=c) for c in categories]),
        ):
            path = folder / f"{name}-{query}.txt"
            path.write_text("".join(f"GET {line}\n" for line in lines))
            files[query] = path
    return files


def summarize(measures: list[Measure]) -> dict[str, Any]:
    rps = [m.requests_per_s for m in measures]

    def median(attr: str) -> float:
        return float(statistics.median(getattr(m, attr) for m in measures))

    return {
        "requests_per_s": median("requests_per_s"),
        "requests_per_s_min": min(rps),
        "requests_per_s_max": max(rps),
        "p50_ms": median("p50_ms"),
        "p90_ms": median("p90_ms"),
        "p99_ms": median("p99_ms"),
        "max_ms": max(m.max_ms for m in measures),
        "errors": sum(m.errors for m in measures),
        "server_cpu_ms_per_request": float(statistics.median(m.server_cores / m.requests_per_s * 1000 for m in measures)),
        "postgres_cpu_ms_per_request": float(
            statistics.median((m.postgres_cores + m.postgres_ended_cores) / m.requests_per_s * 1000 for m in measures)
        ),
        "server_cores": median("server_cores"),
        "server_waiting": median("server_waiting"),
        "postgres_cores": median("postgres_cores"),
        "postgres_ended_cores": median("postgres_ended_cores"),
        "transactions_per_request": median("transactions_per_request"),
        "sessions_opened": median("sessions_opened"),
        "client_cores": median("client_cores"),
        "load_average": median("load_average"),
        "rounds": [m.as_dict() for m in measures],
    }


def describe(name: str, s: dict[str, Any]) -> str:
    errors = f"  {s['errors']} errors" if s["errors"] else ""
    spread = f"{s['requests_per_s_min']:,.0f}-{s['requests_per_s_max']:,.0f}"
    return (
        f"    {name:<14} {s['requests_per_s']:>8,.0f} {s['p50_ms']:>7.1f} {s['p99_ms']:>7.1f} {s['max_ms']:>7.0f}  "
        f"{spread:>13}   cores: server {s['server_cores']:.2f} (+{s['server_waiting']:.2f} waiting), "
        f"postgres {s['postgres_cores']:.2f} (+{s['postgres_ended_cores']:.2f} in ended backends), "
        f"wrk {s['client_cores']:.2f}; load {s['load_average']:.1f}; about {s['transactions_per_request']:.2f} "
        f"transactions/request, {s['sessions_opened']:.0f} connections opened per run{errors}\n"
        f"    {'':<14} CPU per request: server {s['server_cpu_ms_per_request']:.2f} ms, PostgreSQL "
        f"{s['postgres_cpu_ms_per_request']:.2f} ms"
    )


def verdicts(results: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """(aim, met / not met / None when Sluice was not measured, the figures behind it)."""
    out: list[tuple[str, bool | None, str]] = []
    timing = results["timing"]
    pk = timing.get("by_pk", {}).get("sluice")
    if pk is None:
        out.append(
            (f"primary key: >= {AIM_PK_RPS:,.0f} requests/s with p99 <= {AIM_PK_P99_MS:.0f} ms", None, "Sluice not measured")
        )
    else:
        ok = pk["requests_per_s"] >= AIM_PK_RPS and pk["p99_ms"] <= AIM_PK_P99_MS and pk["errors"] == 0
        figures = f"{pk['requests_per_s']:,.0f} requests/s, p99 {pk['p99_ms']:.1f} ms"
        out.append((f"primary key: >= {AIM_PK_RPS:,.0f} requests/s with p99 <= {AIM_PK_P99_MS:.0f} ms", ok, figures))
    for query in QUERIES:
        ratio = results["ratios"].get(query)
        aim = f"{query}: >= {AIM_RATIO:.1f}x PostGraphile's requests/s"
        out.append((aim, None, "Sluice not measured") if ratio is None else (aim, ratio >= AIM_RATIO, f"{ratio:.2f}x"))
    return out


def print_report(results: dict[str, Any]) -> None:
    for query in QUERIES + REST_QUERIES:
        per_server = results["timing"].get(query, {})
        print(f"\n{TITLES[query]}: {results['connections']} connections, {results['seconds']:.0f} s x {results['rounds']} rounds")
        print(f"    {'server':<14} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}  {'req/s range':>13}")
        for name in ("sluice",) if query in REST_QUERIES else ("sluice", "postgraphile"):
            if name in per_server:
                print(describe(name, per_server[name]))
            else:
                print(f"    {name:<14} not measured: {results['unmeasured'].get(f'{name}/{query}', 'unavailable')}")
        ratio = results["ratios"].get(query)
        if ratio is not None:
            print(f"    Sluice / PostGraphile: {ratio:.2f}x requests/s")
    cores, before = results["cores"] or 1, results["load_average_at_start"]
    if before > cores:
        print(
            f"\nwarning: load average {before:.1f} on {cores} cores before the servers started: other work shared the "
            "cores (see 'waiting'), so these figures are lower and noisier than on a quiet machine"
        )
    print("\naims (issue 11):")
    for aim, met, figures in verdicts(results):
        print(f"    {'met      ' if met else 'not met  ' if met is False else 'unknown  '} {aim}: {figures}")


def measure(
    servers: dict[str, Server], bodies: dict[str, dict[str, Path]], queries: dict[str, list[str]], args: argparse.Namespace
) -> dict[str, dict[str, list[Measure]]]:
    """``rounds`` x query x server (the first server alternating between rounds): warm-up, then a measured run."""
    found: dict[str, dict[str, list[Measure]]] = {q: {} for q in QUERIES + REST_QUERIES}
    names = list(servers)
    pg = PgWatch(api_data.server_url(), api_data.DATABASE)
    try:
        _rounds(servers, bodies, queries, args, pg, names, found)
    finally:
        pg.close()
    return found


def _rounds(
    servers: dict[str, Server],
    bodies: dict[str, dict[str, Path]],
    queries: dict[str, list[str]],
    args: argparse.Namespace,
    pg: PgWatch,
    names: list[str],
    found: dict[str, dict[str, list[Measure]]],
) -> None:
    for round_index in range(args.rounds):
        for query in QUERIES + REST_QUERIES:
            order = names if round_index % 2 == 0 else names[::-1]
            for name in order:
                if query not in queries[name]:
                    continue
                server = servers[name]
                wrk = (server.url if query in REST_QUERIES else server.graphql_url, bodies[name][query])
                if args.warmup > 0:
                    run_wrk(*wrk, args.warmup, args.connections, args.threads, server.process.pid, pg)
                m = run_wrk(*wrk, args.seconds, args.connections, args.threads, server.process.pid, pg)
                found[query].setdefault(name, []).append(m)
                print(
                    f"  round {round_index + 1} {query:<10} {name:<12} {m.requests_per_s:>8,.0f} req/s  p50 {m.p50_ms:6.1f} ms  "
                    f"p99 {m.p99_ms:6.1f}  cores: server {m.server_cores:.2f} pg {m.postgres_cores + m.postgres_ended_cores:.2f} "
                    f"wrk {m.client_cores:.2f}; {m.transactions_per_request:.2f} tx/request, {m.sessions_opened} new connections"
                    + (f"  {m.errors} errors {m.error_detail}" if m.errors else ""),
                    flush=True,
                )


def process_count(pid: int) -> int:
    """The process and its direct children (uvicorn workers would be children of ``sluice serve``)."""
    count = 1
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rpartition(")")[2].split()[1]) == pid:
                    count += 1
            except (OSError, IndexError, ValueError):
                continue
    return count


def start_servers(stack: ExitStack, args: argparse.Namespace, work: Path, results: dict[str, Any]) -> dict[str, Server]:
    """Start ``sluice serve`` (when it cannot serve, say why and go on) and PostGraphile (required)."""
    servers: dict[str, Server] = {}
    if args.only != "postgraphile":
        try:
            folder = write_sluice_project(work / "project", api_data.database_url())
            extra = shlex.split(args.sluice_serve_args)
            src = args.sluice_src.resolve()
            sluice = stack.enter_context(sluice_serve(folder, src, free_port(), work / "sluice.log", extra))
            servers["sluice"] = sluice
            results["sluice"] = {"src": str(src), "serve_args": extra, "processes": process_count(sluice.process.pid)}
        except ServerUnavailable as exc:
            reason = " ".join(line.strip() for line in str(exc).strip().splitlines()[-3:])
            print(f"Sluice: not measured: {reason}")
            results["unmeasured"].update({f"sluice/{query}": reason for query in QUERIES + REST_QUERIES})
    print("per-request logs off on both servers: Sluice api.log_requests: false, PostGraphile --disable-query-log")
    results["request_logs"] = "off on both servers (Sluice api.log_requests: false, PostGraphile --disable-query-log)"
    if args.only != "sluice":
        cli = install_postgraphile()
        node = node_version()
        log = work / "postgraphile.log"
        peer = stack.enter_context(postgraphile(cli, api_data.database_url(), free_port(), log, args.pool))
        servers["postgraphile"] = peer
        version = postgraphile_version()
        processes = process_count(peer.process.pid)
        results["postgraphile"] = {"version": version, "node": node, "pool": args.pool, "processes": processes}
        print(f"PostGraphile {version} on Node.js {node} (pool {args.pool})")
    return servers


def check_servers(
    servers: dict[str, Server],
    truth: tuple[dict[int, Any], dict[str, Any]],
    keys: list[int],
    categories: list[str],
    work: Path,
    results: dict[str, Any],
) -> tuple[dict[str, list[str]], dict[str, dict[str, Path]]]:
    """Compare each server's answers with PostgreSQL's; the queries each may be timed on, and their body files.

    A Sluice query that answers wrong is left out (and said so); PostGraphile answering wrong ends the benchmark.
    """
    queries: dict[str, list[str]] = {}
    bodies: dict[str, dict[str, Path]] = {}
    for name, server in list(servers.items()):
        try:
            q = postgraphile_queries() if name == "postgraphile" else sluice_queries(server)
            problems = check_answers(server, q, *truth)
        except ServerUnavailable as exc:
            if name == "postgraphile":
                raise
            print(f"Sluice: not measured: {exc}")
            results["unmeasured"].update({f"{name}/{query}": str(exc) for query in QUERIES + REST_QUERIES})
            del servers[name]
            continue
        ok = [query for query in QUERIES if problems[query] is None]
        for query in QUERIES:
            if problems[query]:
                print(f"{name}: {query} differs from PostgreSQL, not timed: {problems[query]}")
                results["unmeasured"][f"{name}/{query}"] = f"wrong answers: {problems[query]}"
        if name == "postgraphile" and len(ok) < len(QUERIES):
            sys.exit("PostGraphile's answers differ from PostgreSQL's: fix the benchmark first")
        if name == "sluice":
            rest = check_rest(server, *truth)
            for query, problem in rest.items():
                if problem is None:
                    ok.append(query)
                else:
                    print(f"{name}: {query} differs from PostgreSQL or fails, not timed: {problem}")
                    results["unmeasured"][f"{name}/{query}"] = problem
        queries[name] = ok
        bodies[name] = write_bodies(work, name, q, keys, categories)
        checked = f"{len(truth[0])} ids and {len(truth[1])} categories"
        print(f"{name}: answers equal PostgreSQL's for {checked}: {', '.join(ok) or 'none'}")
        results[name].update({"query_by_pk": q.by_pk, "query_list": q.listing})
    return queries, bodies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--authors", type=int, default=1000)
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per (round, query, server)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unrecorded seconds before each measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16, help="requests in flight (wrk -c)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--bodies", type=int, default=20_000, help="distinct request bodies per query (ids drawn at random)")
    parser.add_argument("--sample", type=int, default=200, help="ids checked against PostgreSQL before timing")
    parser.add_argument("--pool", type=int, default=10, help="PostGraphile's pool size (node-postgres's default: 10)")
    parser.add_argument("--sluice-src", type=Path, default=HERE.parent / "src", help="the sluice package to serve")
    parser.add_argument("--sluice-serve-args", default="", help="extra options for sluice serve, e.g. '--workers 2'")
    parser.add_argument("--only", choices=["sluice", "postgraphile"], help="measure one server only")
    parser.add_argument("--rebuild", action="store_true", help="recreate the tables even when they hold the right counts")
    parser.add_argument("--keep", action="store_true", help="keep the apibench database at the end (reused by the next run)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--fanout", action="store_true", help="also run bench/api_fanout.py (500 subscribers, 1,000 changes/s)")
    parser.add_argument(
        "--soak", type=float, default=0, metavar="SECONDS", help="also run bench/api_soak.py for SECONDS (600: the aim)"
    )
    args = parser.parse_args()

    wrk_binary()
    began = time.monotonic()
    dataset = api_data.prepare(args.authors, args.articles, rebuild=args.rebuild)
    print(
        f"database {api_data.DATABASE}: {dataset.authors:,} authors, {dataset.articles:,} articles, "
        f"{dataset.categories} categories"
    )
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "authors": dataset.authors,
        "articles": dataset.articles,
        "connections": args.connections,
        "wrk_threads": args.threads,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "unmeasured": {},
        "ratios": {},
        "timing": {},
    }
    keys = dataset.sample_ids(args.bodies, seed=11)
    categories = dataset.sample_categories(args.bodies, seed=12)
    sample_keys = sorted({1, dataset.articles, dataset.articles + 1, *keys[: args.sample]})
    truth = expected_rows(dataset, sample_keys, [dataset.category(i) for i in range(dataset.categories)])

    work = Path(tempfile.mkdtemp(prefix="sluice-bench-api-"))
    try:
        with ExitStack() as stack:
            servers = start_servers(stack, args, work, results)
            queries, bodies = check_servers(servers, truth, keys, categories, work, results)
            found = measure(servers, bodies, queries, args)
            for name, server in servers.items():  # still the right answers after the load (no error under load)
                q = postgraphile_queries() if name == "postgraphile" else sluice_queries(server)
                some_keys = {k: truth[0][k] for k in sample_keys[:20]} if "by_pk" in queries[name] else {}
                some_lists = dict(list(truth[1].items())[:10]) if "list" in queries[name] else {}
                after = check_answers(server, q, some_keys, some_lists)
                results[name]["answers_after_load"] = after
                if any(after.values()):
                    print(f"{name}: answers after the load differ from PostgreSQL's: {after}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep:
            api_data.drop()
    for query in QUERIES + REST_QUERIES:
        results["timing"][query] = {name: summarize(ms) for name, ms in found[query].items()}
        both = results["timing"][query]
        if "sluice" in both and "postgraphile" in both:
            results["ratios"][query] = both["sluice"]["requests_per_s"] / both["postgraphile"]["requests_per_s"]
    results["aims"] = [{"aim": a, "met": m, "figures": f} for a, m, f in verdicts(results)]
    results["wall_s"] = time.monotonic() - began
    print_report(results)
    results.update(api_soak.extras(args.fanout, args.soak, args.sluice_src.resolve()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
