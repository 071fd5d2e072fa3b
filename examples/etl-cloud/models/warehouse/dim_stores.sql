select store_id, store_name, city from {{ ref('clean_stores') }}
