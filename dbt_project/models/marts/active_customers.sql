{#- The customers tessera may act on: every customer of dim_customers who has not asked for
    erasure (grain: customer_key). The erasure filter, written once: decisions start from this
    relation, and so may every model and published output that must leave erased people out.
    `select *`: a filter of dim_customers, it carries every column dim_customers has. -#}
{{ config(materialized='view') }}

select *
from {{ ref('dim_customers') }}
where not is_erasure_requested
