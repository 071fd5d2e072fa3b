"""The data-quality part of test_monitoring.py's live stack: a project whose checks pass, fail and warn.

``orders`` (a CSV file into the lake) has three checks run by DuckDB over its Parquet output: ``not_null`` on
``order_id`` passes, ``unique`` on ``order_id`` (severity ``warn``) finds one repeated id, ``accepted_values`` on
``status`` (severity ``error``) finds one unknown status and fails the object, so ``paid`` (its child, with a
``row_count`` check) is skipped. Each run of it therefore counts one passed, one warned and one failed check.
"""

from __future__ import annotations

from pathlib import Path

ORDERS = "order_id,status,amount\n1,paid,10\n2,paid,12\n2,refunded,5\n3,lost,7\n"
PROJECT = """name: quality
objects:
  - id: 1001
    name: orders
    source: {type: csv, path: orders.csv}
    checks:
      - not_null: {columns: [order_id]}
      - unique: {columns: [order_id]}
        severity: warn
      - accepted_values: {column: status, values: [paid, refunded]}
  - id: 1002
    name: paid
    parents: [1001]
    sql: select * from orders where status = 'paid'
    checks:
      - row_count: {min: 1}
"""
# (object, check) -> failing rows at each run, and the checks that run
FAILING_ROWS = {
    ("orders", "not_null_order_id"): 0.0,
    ("orders", "unique_order_id"): 1.0,
    ("orders", "accepted_values_status"): 1.0,
}
PASSED, WARNED, FAILED = 1, 1, 1  # check runs of each outcome per run (paid's row_count never runs)
CHECKS_PER_RUN = PASSED + WARNED + FAILED
DECLARED_CHECKS = 4  # orders' three and paid's row_count: each has its series at zero from the start


def write_project(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "orders.csv").write_text(ORDERS, encoding="utf-8")
    (folder / "sluice.yaml").write_text(PROJECT, encoding="utf-8")
    return folder
