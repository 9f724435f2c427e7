{#- Incremental processing loses nothing and keeps nothing stale: int_order_lines holds
    exactly the lines int_order_lines_current derives from the landing files as they are now. -#}
{{ config(meta={'dagster': {'ref': {'name': 'int_order_lines'}}}) }}
{%- set columns = ['source_table', 'order_item_id', 'order_id', 'channel', 'source_customer_id', 'product_id',
                   'quantity', 'unit_price', 'currency', 'unit_price_base', 'status', 'ordered_at',
                   'invalid_reason', '_source_file', '_source_row'] %}
with

stored as (
    select {{ columns | join(', ') }} from {{ ref('int_order_lines') }}
),

derived as (
    select {{ columns | join(', ') }} from {{ ref('int_order_lines_current') }}
),

missing as (
    select 'derived, not stored' as problem, * from (select * from derived except select * from stored) as d
),

extra as (
    select 'stored, not derived' as problem, * from (select * from stored except select * from derived) as s
),

-- except compares distinct rows: a line stored twice shows only in the counts
counts as (
    select 'row counts differ' as problem, d.*
    from (select count(*) as n from stored) as s
    cross join (select count(*) as n from derived) as c
    cross join (select * from derived limit 1) as d
    where s.n <> c.n
)

select * from missing
union all
select * from extra
union all
select * from counts
