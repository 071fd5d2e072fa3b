{{ config(materialized='incremental', unique_key='customer_id') }}
-- Only customers changed since the last run are read again; {{ this }} is the previous output.
select customer_id, customer_name, country, updated_at
from {{ ref('stg_customers') }}
{% if is_incremental() %}
where updated_at > (select max(updated_at) from {{ this }})
{% endif %}
