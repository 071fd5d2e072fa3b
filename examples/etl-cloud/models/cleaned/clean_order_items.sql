-- Order lines with something ordered (a quantity of 0 is dropped), one row per (order, line).
select
    cast(order_id as bigint) as order_id,
    cast(line_no as integer) as line_no,
    cast(product_id as integer) as product_id,
    cast(quantity as integer) as quantity,
    cast(discount as decimal(4, 3)) as discount
from {{ ref('order_items') }}
where quantity > 0
qualify row_number() over (partition by order_id, line_no order by product_id) = 1
