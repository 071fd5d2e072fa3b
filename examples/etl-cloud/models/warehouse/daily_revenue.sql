-- metrics.daily_revenue, computed inside PostgreSQL from the fact table.
select
    order_date as day,
    count(distinct order_id) as orders,
    sum(quantity) as items,
    sum(amount) as revenue
from {{ ref('fact_orders') }}
group by order_date
