{#- The customers tessera may name or act on (grain: customer_key): every customer of dim_customers
    who has not asked for erasure. The erasure filter, written once: decisions and every published
    output start from this relation (tessera/decisioning/decide.py, tessera/publish/sql).
    `select *`: a filter of dim_customers, it carries every column dim_customers has. -#}
select *
from {{ ref('dim_customers') }}
where not is_erasure_requested
