"""Time Prefect 3 running the shared layered no-op DAG as one flow.

Run with the Prefect venv's python; prints one JSON result line on stdout.
Uses a throw-away PREFECT_HOME and Prefect's ephemeral local API server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

if TYPE_CHECKING:
    from prefect import Flow

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dag_shape import layered_dag


def configure_env(home: str) -> None:
    """Point Prefect at an isolated home and its ephemeral server (pre-import)."""
    for key in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
        os.environ.pop(key, None)
    os.environ.update(
        {
            "PREFECT_HOME": home,
            "PREFECT_SERVER_EPHEMERAL_ENABLED": "true",
            # Cold start (sqlite migrations) takes ~15 s here; default limit is 20 s.
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_LOGGING_TO_API_ENABLED": "false",
        }
    )


def make_flow(dag: dict[int, list[int]]) -> Flow[[], int]:
    """A flow submitting one no-op task per object, gated on its parents."""
    from prefect import flow, task
    from prefect.futures import PrefectFuture, wait

    @task
    def noop() -> None:
        return None

    @flow(name="sluice-peer-bench")
    def bench_flow() -> int:
        futures: dict[int, PrefectFuture[None]] = {}
        for oid, parents in dag.items():  # keys are topologically ordered
            futures[oid] = noop.submit(return_state=False, wait_for=[futures[p] for p in parents])
        wait(list(futures.values()))
        done = sum(1 for f in futures.values() if f.state.is_completed())
        if done != len(dag):
            raise RuntimeError(f"{len(dag) - done} of {len(dag)} tasks did not complete")
        return done

    return bench_flow


def wait_until_recorded(flow_run_id: UUID, expected: int, timeout_s: float) -> float:
    """Poll the API until ``expected`` task runs of the flow run are COMPLETED.

    Task-run states reach the server as events that it persists asynchronously,
    so they lag behind the flow's return. Returns the seconds waited.
    """
    from prefect.client.orchestration import get_client

    body = {
        "task_runs": {
            "flow_run_id": {"any_": [str(flow_run_id)]},
            "state": {"type": {"any_": ["COMPLETED"]}},
        }
    }
    start = time.perf_counter()
    with get_client(sync_client=True) as client:
        while True:
            count = int(client.request("POST", "/task_runs/count", json=body).json())
            waited = time.perf_counter() - start
            if count >= expected:
                return waited
            if waited > timeout_s:
                raise TimeoutError(f"only {count}/{expected} task runs recorded")
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--layers", type=int, default=3)
    args = parser.parse_args(argv)

    home = tempfile.mkdtemp(prefix="sluice-prefect-home-")
    try:
        configure_env(home)
        import prefect

        # Warm-up: starts the ephemeral server and creates its database.
        t0 = time.perf_counter()
        make_flow(layered_dag(1, 1))()
        print(f"prefect warm-up flow: {time.perf_counter() - t0:.2f}s", file=sys.stderr)

        dag = layered_dag(args.objects, args.layers)
        bench_flow = make_flow(dag)
        start = time.perf_counter()
        state = bench_flow(return_state=True)
        seconds = time.perf_counter() - start
        if not state.is_completed():
            print(f"prefect flow ended in state {state!r}", file=sys.stderr)
            return 1
        assert state.result() == len(dag)

        # Untimed: let the server persist the task-run events before exiting,
        # otherwise its shutdown cancels in-flight writes (noisy tracebacks).
        flow_run_id = state.state_details.flow_run_id
        assert flow_run_id is not None
        try:
            lag = wait_until_recorded(flow_run_id, len(dag), timeout_s=600)
            print(f"prefect server recording lag after flow return: {lag:.2f}s", file=sys.stderr)
        except TimeoutError as exc:
            print(f"warning: prefect server still recording task runs: {exc}", file=sys.stderr)
        print(
            json.dumps(
                {
                    "tool": "prefect",
                    "version": prefect.__version__,
                    "objects": len(dag),
                    "layers": args.layers,
                    "seconds": seconds,
                    "objects_per_s": len(dag) / seconds if seconds > 0 else None,
                }
            ),
            flush=True,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
