{#- The customers published outputs may name (grain: customer_key): every customer of dim_customers
    who has not asked for erasure. The one place the erasure filter is written for publishing;
    every published table starts from this relation (tessera/publish/sql). -#}
select
    customer_key,
    email,
    first_name
from {{ ref('dim_customers') }}
where not is_erasure_requested
