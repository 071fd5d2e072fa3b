-- Every order line with its order, product and category: the enriched layer's wide table.
-- Plain SQL (joins and arithmetic) so that it runs unchanged on Spark (engine: spark, see sluice.yaml).
select
    i.order_id,
    i.line_no,
    o.order_date,
    o.status,
    o.customer_id,
    o.store_id,
    i.product_id,
    p.product_name,
    c.category,
    i.quantity,
    p.unit_price,
    i.discount,
    cast(round(i.quantity * p.unit_price * (1 - i.discount), 2) as decimal(12, 2)) as amount
from {{ ref('clean_order_items') }} i
join {{ ref('clean_orders') }} o on o.order_id = i.order_id
join {{ ref('clean_products') }} p on p.product_id = i.product_id
join {{ ref('clean_categories') }} c on c.category_id = p.category_id
