select p.product_id, p.product_name, c.category, p.unit_price, c.vat_rate
from {{ ref('clean_products') }} p
join {{ ref('clean_categories') }} c on c.category_id = p.category_id
