{#- The person records identity resolution works on: one row per CRM profile id (a profile
    delivered twice keeps its most recently updated row), in the shape the identity engine's
    pipeline mapping (config/identity_mapping.yaml) reads. A customer id the shop delivered on an
    order or a login event without any usable CRM profile (a shop without a CRM export) is a
    record too, without attributes: a known buyer is a customer (docs/landing_contract.md,
    "Partial shops"). -#}
with

ranked as (
    select
        *,
        row_number() over (partition by customer_id order by updated_at desc nulls last, _source_file desc, _source_row desc) as delivery_rank
    from {{ ref('stg_customers') }}
    where invalid_reason is null
),

delivered_ids as (
    select customer_id from {{ ref('stg_orders') }} where invalid_reason is null
    union
    select customer_id from {{ ref('stg_events') }} where invalid_reason is null and customer_id is not null
),

without_profile as (
    select d.customer_id
    from delivered_ids as d
    left join ranked as r on r.customer_id = d.customer_id
    where r.customer_id is null
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

union all

select
    customer_id as record_id,
    cast(null as {{ dbt.type_string() }}) as first_name,
    cast(null as {{ dbt.type_string() }}) as last_name,
    cast(null as date) as birth_date,
    cast(null as {{ dbt.type_string() }}) as address,
    cast(null as {{ dbt.type_string() }}) as city,
    cast(null as {{ dbt.type_string() }}) as postcode,
    cast(null as {{ dbt.type_string() }}) as country_code,
    cast(null as {{ dbt.type_string() }}) as email,
    cast(null as {{ dbt.type_string() }}) as phone_e164,
    cast(null as {{ dbt.type_string() }}) as loyalty_card,
    cast(null as {{ dbt.type_timestamp() }}) as updated_at
from without_profile
