"""dlt loading one local file into PostgreSQL, run by ``bench/files_postgres.py`` in dlt's own virtual environment.

Usage: run_dlt_files.py parquet|csv FILE POSTGRES_URL DATASET PIPELINES_DIR. Prints one JSON line,
``{"seconds": s, "cpu_s": c, "loader_file_format": f}``: the time (and this process's CPU time, every thread) of
``pipeline.run`` (extract, normalize, load), imports excluded.

dlt is given its fastest settings for this job: the filesystem source's readers yielding Arrow batches
(``read_parquet(use_pyarrow=True)``, ``read_csv_duckdb(use_pyarrow=True)``; without ``use_pyarrow`` they yield
Python dicts) in chunks of 65,536 rows, and the ``csv`` loader file format, which the postgres destination loads
with ``COPY`` (its preferred, default format is ``insert_values``: multi-row INSERT statements).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import dlt
from dlt.sources.filesystem import filesystem, read_csv_duckdb, read_parquet

CHUNK = 65_536


def main() -> None:
    kind, file, url, dataset, pipelines_dir = sys.argv[1:6]
    path = Path(file).resolve()
    files = filesystem(bucket_url=path.parent.as_uri(), file_glob=path.name)
    if kind == "parquet":
        resource = files | read_parquet(chunksize=CHUNK, use_pyarrow=True)
    else:
        resource = files | read_csv_duckdb(chunk_size=CHUNK, use_pyarrow=True)
    pipeline = dlt.pipeline(
        pipeline_name=f"filebench_{dataset}",
        destination=dlt.destinations.postgres(credentials=url),
        dataset_name=dataset,
        pipelines_dir=pipelines_dir,
    )
    start, cpu = time.perf_counter(), time.process_time()
    pipeline.run(resource.with_name("orders"), write_disposition="replace", loader_file_format="csv")
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "cpu_s": time.process_time() - cpu, "loader_file_format": "csv"}))


if __name__ == "__main__":
    main()
