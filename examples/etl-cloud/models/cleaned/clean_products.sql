-- The PostgreSQL source table, typed (the price as a decimal of cents).
select
    cast(product_id as integer) as product_id,
    trim(name) as product_name,
    cast(category_id as integer) as category_id,
    cast(unit_price as decimal(10, 2)) as unit_price
from {{ ref('products') }}
