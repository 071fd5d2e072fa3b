-- Typed and deduplicated: the API sends a customer again when it changes; keep its latest version.
select
    cast(id as integer) as customer_id,
    trim(name) as customer_name,
    lower(trim(email)) as email,
    trim(city) as city,
    cast(signup_date as date) as signup_date,
    cast(updated_at as timestamp) as updated_at
from {{ ref('customers') }}
qualify row_number() over (partition by id order by cast(updated_at as timestamp) desc) = 1
