{#- The person records identity resolution works on: one row per CRM profile id (a profile
    delivered twice keeps its most recently updated row), in the shape the identity engine's
    pipeline mapping (config/identity_mapping.yaml) reads. -#}
with

ranked as (
    select
        *,
        row_number() over (partition by customer_id order by updated_at desc nulls last, _source_file desc, _source_row desc) as delivery_rank
    from {{ ref('stg_customers') }}
    where invalid_reason is null
)

select
    customer_id as record_id,
    first_name,
    last_name,
    birth_date,
    address,
    city,
    postcode,
    country_code,
    email,
    phone_e164,
    loyalty_card,
    updated_at
from ranked
where delivery_rank = 1
