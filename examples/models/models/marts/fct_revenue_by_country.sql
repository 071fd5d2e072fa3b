with orders as (
    select o.*, c.country
    from {{ ref('stg_orders') }} as o
    join {{ ref('dim_customers') }} as c using (customer_id)
)
select country, count(*) as orders, sum(amount) as revenue
from orders
group by country
order by country
