select
    cast(category_id as integer) as category_id,
    lower(trim(category)) as category,
    cast(vat_rate as decimal(5, 3)) as vat_rate
from {{ ref('categories') }}
