-- Each customer's order history summed up: first and last order, orders, lifetime value.
select
    c.customer_id,
    min(l.order_date) as first_order_date,
    max(l.order_date) as last_order_date,
    count(distinct l.order_id) as orders,
    coalesce(sum(l.amount), 0) as lifetime_value
from {{ ref('clean_customers') }} c
left join {{ ref('order_lines') }} l on l.customer_id = c.customer_id
group by c.customer_id
