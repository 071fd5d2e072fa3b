"""A micro-batch appender to be killed: ``appender_child.py SPEC_JSON LAYER NAME``.

Appends batches of 1,000 rows for ever, each committed with ``{"next": <the next id>}``, starting from the
last commit's ``next`` (as a streaming object resumes from its offsets), and prints ``appended`` after the
first commit so the parent knows it is under way (tests/lake/test_appends.py kills it at random moments).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contract import SCHEMA, open_lake

BATCH = 1_000


def main() -> None:
    spec, layer, name = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    lake = open_lake(spec)
    last = lake.last_commit(layer, name)
    start = int(last["next"]) if last else 0
    while True:
        ids = pa.array(range(start, start + BATCH), pa.int64())
        batch = pa.record_batch([ids, pa.array([f"n{i}" for i in range(BATCH)])], schema=SCHEMA)
        lake.append(layer, name, pa.RecordBatchReader.from_batches(SCHEMA, [batch]), commit={"next": start + BATCH})
        start += BATCH
        print("appended", flush=True)


if __name__ == "__main__":
    main()
