"""Time Dagster executing the shared layered no-op DAG in process.

Run with the Dagster venv's python; prints one JSON result line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagster import JobDefinition

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dag_shape import layered_dag


def _op_name(oid: int) -> str:
    return f"obj_{oid}"


def build_job(dag: dict[int, list[int]]) -> JobDefinition:
    """One aliased no-op op per object, wired with Nothing-typed inputs."""
    from dagster import (
        DependencyDefinition,
        GraphDefinition,
        In,
        NodeInvocation,
        Nothing,
        OpDefinition,
        Out,
        op,
    )

    def make_noop(n_parents: int) -> OpDefinition:
        @op(
            name=f"noop_{n_parents}",
            ins={f"p{j}": In(Nothing) for j in range(n_parents)},
            out=Out(Nothing),
        )
        def _noop() -> None:
            return None

        return _noop

    # One definition per in-degree present; each object is an aliased
    # invocation of it (an unused definition would become an extra node).
    op_defs = {n: make_noop(n) for n in sorted({len(p) for p in dag.values()})}
    deps: dict[NodeInvocation, dict[str, DependencyDefinition]] = {}
    for oid, parents in dag.items():
        node = NodeInvocation(op_defs[len(parents)].name, alias=_op_name(oid))
        deps[node] = {f"p{j}": DependencyDefinition(_op_name(parent)) for j, parent in enumerate(parents)}
    graph = GraphDefinition(
        name="sluice_peer_bench",
        node_defs=list(op_defs.values()),
        dependencies=deps,
    )
    return graph.to_job()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--layers", type=int, default=3)
    args = parser.parse_args(argv)

    os.environ.pop("DAGSTER_HOME", None)  # ephemeral in-memory instance
    import dagster

    dag = layered_dag(args.objects, args.layers)
    job = build_job(dag)
    run_config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

    start = time.perf_counter()
    result = job.execute_in_process(run_config=run_config)
    seconds = time.perf_counter() - start
    if not result.success:
        print("dagster run failed", file=sys.stderr)
        return 1
    done = len(result.filter_events(lambda e: e.event_type_value == "STEP_SUCCESS"))
    if done != len(dag):
        print(f"expected {len(dag)} successful steps, got {done}", file=sys.stderr)
        return 1

    print(
        json.dumps(
            {
                "tool": "dagster",
                "version": dagster.__version__,
                "objects": len(dag),
                "layers": args.layers,
                "seconds": seconds,
                "objects_per_s": len(dag) / seconds if seconds > 0 else None,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
