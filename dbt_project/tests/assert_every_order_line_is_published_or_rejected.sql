{#- Reads several models; Dagster shows it as a check on fct_order_items (dagster-dbt needs the name). -#}
{{ config(meta={'dagster': {'ref': {'name': 'fct_order_items'}}}) }}
-- Reconciliation: each staged order line lands in fct_order_items or in int_rejected_records.
with staged as (
    select order_item_id from {{ ref('stg_order_items') }}
    union all
    select transaction_line_id from {{ ref('stg_pos_transactions') }}
),
accounted as (
    select order_item_id from {{ ref('fct_order_items') }}
    union all
    select record_id from {{ ref('int_rejected_records') }}
    where source_table in ('order_items', 'pos_transactions')
)
select count(*) as staged_rows, (select count(*) from accounted) as accounted_rows
from staged
having count(*) <> (select count(*) from accounted)
