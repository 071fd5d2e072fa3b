-- Typed, statuses normalised (PAID, paid -> paid), one row per order.
select
    cast(order_id as bigint) as order_id,
    cast(customer_id as integer) as customer_id,
    cast(store_id as integer) as store_id,
    cast(order_date as date) as order_date,
    lower(trim(status)) as status
from {{ ref('orders') }}
qualify row_number() over (partition by order_id order by order_date desc) = 1
