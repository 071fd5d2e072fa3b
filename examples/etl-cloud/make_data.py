"""Write the example's files, ``data/stores.csv``, ``data/categories.json`` and ``data/order_items.parquet``,
from :mod:`shop_data` (seeded, so the same bytes every time): ``python examples/etl-cloud/make_data.py``."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shop_data


def write(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "stores.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["store_id", "store_name", "city"])
        writer.writerows(shop_data.stores())
    (folder / "categories.json").write_text(json.dumps(shop_data.categories(), indent=1) + "\n", encoding="utf-8")
    schema = pa.schema(
        [
            ("order_id", pa.int64()),
            ("line_no", pa.int32()),
            ("product_id", pa.int32()),
            ("quantity", pa.int32()),
            ("discount", pa.float64()),
        ]
    )
    pq.write_table(
        pa.Table.from_pylist(shop_data.order_items(), schema=schema), folder / "order_items.parquet", compression="zstd"
    )


if __name__ == "__main__":
    write(Path(__file__).resolve().parent / "data")
