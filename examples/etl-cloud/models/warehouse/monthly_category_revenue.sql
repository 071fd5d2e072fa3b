-- metrics.monthly_category_revenue: the fact table joined to a dimension, inside PostgreSQL.
select
    date_trunc('month', f.order_date)::date as month,
    p.category,
    sum(f.amount) as revenue
from {{ ref('fact_orders') }} f
join {{ ref('dim_products') }} p on p.product_id = f.product_id
group by 1, 2
