"""A small project whose data-quality checks pass, fail and warn, shared by the tests that need real check results:
the live monitoring test (tests/deploy/test_monitoring.py), the UI's browser test (tests/server/test_ui_checks.py)
and the check series' test (tests/checks/test_run_series.py).

CSV files into the lake, checked by DuckDB over their Parquet output:

- ``orders`` (1001): ``not_null`` on ``order_id`` passes; ``accepted_values`` on ``status`` (severity ``error``) finds
  one unknown status (``lost``) and fails the object, so ``paid`` (2001, its child, with a ``row_count`` check that
  therefore never runs) is skipped;
- ``customers`` (1002): ``not_null`` on ``email`` (severity ``warn``) finds one null email and the object loads;
  ``unique`` on ``customer_id`` passes.

Each run counts two passed checks, one failed (error) and one warned.
"""

from __future__ import annotations

from pathlib import Path

ORDERS = "order_id,status\n1,paid\n2,paid\n2,refunded\n3,lost\n"
CUSTOMERS = "customer_id,email\n1,a@x\n2,\n"
PROJECT = """name: quality
objects:
  - id: 1001
    name: orders
    source: {type: csv, path: orders.csv}
    checks:
      - not_null: {columns: [order_id]}
      - accepted_values: {column: status, values: [paid, refunded]}
  - id: 1002
    name: customers
    source: {type: csv, path: customers.csv}
    checks:
      - not_null: {columns: [email]}
        severity: warn
      - unique: {columns: [customer_id]}
  - id: 2001
    name: paid
    parents: [1001]
    sql: "select * from orders where status = 'paid'"
    checks:
      - row_count: {min: 1}
"""
# (object, check) -> failing rows at each run, for the checks that run
FAILING_ROWS = {
    ("orders", "not_null_order_id"): 0.0,
    ("orders", "accepted_values_status"): 1.0,
    ("customers", "not_null_email"): 1.0,
    ("customers", "unique_customer_id"): 0.0,
}
PASSED, WARNED, FAILED = 2, 1, 1  # check runs of each outcome per run
DECLARED = {  # check -> (object, kind, severity), every declared check (paid's row_count included)
    "not_null_order_id": ("orders", "not_null", "error"),
    "accepted_values_status": ("orders", "accepted_values", "error"),
    "not_null_email": ("customers", "not_null", "warn"),
    "unique_customer_id": ("customers", "unique", "error"),
    "row_count": ("paid", "row_count", "error"),
}


def write_project(folder: Path) -> Path:
    """The project in ``folder`` (created); returns it."""
    folder.mkdir(parents=True)
    (folder / "orders.csv").write_text(ORDERS, encoding="utf-8")
    (folder / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    (folder / "sluice.yaml").write_text(PROJECT, encoding="utf-8")
    return folder
