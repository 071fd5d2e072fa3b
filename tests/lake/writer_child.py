"""A lake writer to be killed: ``writer_child.py SPEC_JSON LAYER NAME ROWS PARTITION_COLUMN WHEN``.

Writes ROWS rows in batches of 10,000 and prints ``writing`` at the moment named by WHEN, then waits so
the parent can kill it there (tests/lake/test_contract.py): ``streaming`` once the first batches went out
(it then goes on slowly, a short sleep per batch), ``then`` in the ``then`` step once its stream ended, when
every data file is complete but not committed.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contract import SCHEMA, open_lake

BATCH = 10_000


def main() -> None:
    spec, layer, name, rows, partition = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    streaming = sys.argv[6] == "streaming"
    schema = SCHEMA.append(pa.field("part", pa.int64())) if partition else SCHEMA

    def generate() -> Iterator[pa.RecordBatch]:
        for offset in range(0, rows, BATCH):
            ids = pa.array(range(offset, min(rows, offset + BATCH)), pa.int64())
            columns = [ids, pa.array([f"new-{i}" for i in range(len(ids))])]
            if partition:
                columns.append(pc.divide(ids, 100_000))
            yield pa.record_batch(columns, schema=schema)
            if streaming and offset == 20 * BATCH:
                print("writing", flush=True)
            if streaming and offset > 20 * BATCH:
                time.sleep(0.01)

    def then(data: pa.RecordBatchReader) -> int:
        for _ in data:  # the stream ends once every data file is complete (the load would commit here)
            pass
        print("writing", flush=True)
        time.sleep(120)
        return 0

    lake = open_lake(spec)
    reader = pa.RecordBatchReader.from_batches(schema, generate())
    lake.write(layer, name, reader, partition_by=[partition] if partition else [], then=None if streaming else then)
    print("done", flush=True)


if __name__ == "__main__":
    main()
