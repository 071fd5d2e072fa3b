-- Runs inside PostgreSQL (engine: warehouse) over staging.customers and staging.customer_orders.
select
    c.customer_id,
    c.customer_name,
    c.email,
    c.city,
    c.signup_date,
    s.first_order_date,
    s.orders,
    s.lifetime_value
from {{ ref('clean_customers') }} c
left join {{ ref('customer_orders') }} s on s.customer_id = c.customer_id
