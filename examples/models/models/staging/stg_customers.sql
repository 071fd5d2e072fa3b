-- A dbt-style staging model: one row per customer, names cleaned.
select
    id as customer_id,
    trim(name) as customer_name,
    upper(country) as country,
    updated_at
from {{ ref('customers') }}
