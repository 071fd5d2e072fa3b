-- Names and cities trimmed and capitalised; a store listed twice is kept once (its first, clean, row).
select distinct on (store_id)
    cast(store_id as integer) as store_id,
    trim(store_name) as store_name,
    upper(substr(trim(city), 1, 1)) || lower(substr(trim(city), 2)) as city
from {{ ref('stores') }}
order by store_id, length(store_name)
