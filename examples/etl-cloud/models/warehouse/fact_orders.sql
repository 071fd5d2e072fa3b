-- The star's fact table, one row per order line, loaded into analytics.fact_orders: partitioned by month,
-- primary key (order_id, line_no, order_date), indexes on each dimension key (sluice.yaml).
select
    order_id,
    line_no,
    order_date,
    customer_id,
    product_id,
    store_id,
    status,
    quantity,
    unit_price,
    discount,
    amount
from {{ ref('order_lines') }}
