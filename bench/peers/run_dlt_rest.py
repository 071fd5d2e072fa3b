"""dlt's ``rest_api`` source on the bench API, run by ``bench/rest_source.py`` in dlt's own virtual environment.

Usage: run_dlt_rest.py extract|run URL PER_PAGE FOLDER. Prints one JSON line, ``{"seconds": s, "cpu_s": c, "rows": n}``:
the time (and this process's CPU time) of ``pipeline.extract`` (extract) or ``pipeline.run`` (extract, normalize,
load into DuckDB), imports excluded.
"""

from __future__ import annotations

import json
import sys
import time

import dlt
from dlt.sources.rest_api import rest_api_source


def main() -> None:
    mode, url, per_page, folder = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    source = rest_api_source(
        {
            "client": {
                "base_url": url,
                "paginator": {
                    "type": "offset",
                    "limit": per_page,
                    "offset_param": "offset",
                    "limit_param": "limit",
                    "total_path": "meta.total",
                },
            },
            "resources": [{"name": "items", "endpoint": {"path": "items", "data_selector": "data"}}],
        }
    )
    pipeline = dlt.pipeline(
        pipeline_name="restbench",
        destination=dlt.destinations.duckdb(f"{folder}/restbench.duckdb"),
        dataset_name="bench",
        pipelines_dir=f"{folder}/pipelines",
    )
    start, cpu = time.perf_counter(), time.process_time()
    if mode == "extract":
        info = pipeline.extract(source)
        seconds = time.perf_counter() - start
        rows = sum(m.get("items", 0) for m in _row_counts(info))
    else:
        pipeline.run(source)
        seconds = time.perf_counter() - start
        rows = int(pipeline.last_trace.last_normalize_info.row_counts.get("items", 0))
    print(json.dumps({"seconds": seconds, "cpu_s": time.process_time() - cpu, "rows": rows}))


def _row_counts(info: object) -> list[dict[str, int]]:
    """Rows per table from an ExtractInfo's metrics (0 when this dlt version keeps them elsewhere)."""
    counts = []
    for metrics in getattr(info, "metrics", {}).values():
        for step in metrics:
            counts.append(dict(step.get("table_metrics", {}) and {k: v.items_count for k, v in step["table_metrics"].items()}))
    return counts


if __name__ == "__main__":
    main()
