"""The same SQL object gives the same result on DuckDB and on Spark: joins, window functions and dates.

The SQL is written once, in DuckDB's dialect; the Spark object runs sqlglot's translation. Both outputs are
read back from the lake and compared in full, sorted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import load, write_yaml
from sluice.lake.local import LocalLake
from sluice.runtime.run import RunOptions, run_project
from transforms.conftest import SPARK_YAML

MODEL = """
with monthly as (
    select u.country,
           date_trunc('month', t.created_at) as month,
           count(*) as orders,
           round(sum(t.amount), 2) as revenue,
           min(cast(t.created_at as date)) as first_day,
           max(date_diff('day', u.signup_date, cast(t.created_at as date))) as longest_wait_days
    from transactions t
    join users u on u.user_id = t.user_id
    left join products p on p.product_id = t.product_id
    where t.status <> 'failed' and p.category is not null
    group by u.country, date_trunc('month', t.created_at)
)
select country,
       month,
       cast(month as date) as month_start,
       cast(month + interval 1 month - interval 1 day as date) as month_end,
       extract(year from month) as year,
       strftime(month, '%Y-%m') as label,
       orders,
       revenue,
       first_day,
       cast(first_day + interval 7 day as date) as week_after,
       longest_wait_days,
       rank() over (partition by month order by revenue desc, country) as rank_in_month,
       sum(orders) over (partition by country order by month rows between unbounded preceding and current row) as running_orders,
       lag(revenue) over (partition by country order by month) as previous_revenue,
       row_number() over (order by country, month) as n
from monthly
"""


def test_duckdb_and_spark_give_the_same_rows(tmp_path: Path, spark: Any) -> None:
    folder = tmp_path / "dialect"
    indented = "\n".join("      " + line for line in MODEL.strip().splitlines())
    objects = "".join(
        f"  - id: {object_id}\n    name: {name}\n    parents: [1001, 1002, 1003]\n    engine: {engine}\n    sql: |\n{indented}\n"
        for object_id, name, engine in ((2001, "on_duckdb", "duckdb"), (2002, "on_spark", "spark"))
    )
    write_yaml(
        folder,
        SPARK_YAML + "objects:\n"
        "  - {id: 1001, name: users, source: {type: faker, schema: users, rows: 300, seed: 3}}\n"
        "  - {id: 1002, name: transactions, source: {type: faker, schema: transactions, rows: 5000, seed: 4, users: 300}}\n"
        "  - {id: 1003, name: products, source: {type: faker, schema: products, rows: 100, seed: 5}}\n" + objects,
    )
    project = load(folder)
    summary = run_project(project, RunOptions())
    assert summary.status == "succeeded", {oid: s.error for oid, s in summary.objects.items()}
    lake = LocalLake(project.resolve_lake_path())
    duck = lake.read("cleaned/on_duckdb.parquet").read_all()
    spark_rows = lake.read("cleaned/on_spark.parquet").read_all()
    assert duck.num_rows > 20
    assert spark_rows.column_names == duck.column_names
    assert spark_rows.sort_by("n").to_pylist() == duck.sort_by("n").to_pylist()
