{#- Web, app and store order lines in one shape, each with the reason it cannot be used (NULL when
    it can): a line of a rejected order, or of a product the catalogue does not know. -#}
with

orders as (
    -- the first delivery of each order: a repeated order row is quarantined, not joined again
    select * from {{ ref('stg_orders') }}
    where coalesce(invalid_reason, '') not like 'duplicate %'
),

items as (
    select * from {{ ref('stg_order_items') }}
),

products as (
    select distinct product_id from {{ ref('stg_products') }} where invalid_reason is null
),

customer_keys as (
    select node_key, customer_key from {{ ref('int_identities_resolved') }}
),

web_lines as (
    select
        i.order_item_id,
        i.order_id,
        o.channel,
        ck.customer_key,
        o.customer_id as source_customer_id,
        i.product_id,
        i.quantity,
        i.unit_price,
        o.currency,
        cast(i.unit_price * o.rate_to_base as decimal(18, 2)) as unit_price_base,
        o.status,
        o.ordered_at,
        coalesce(
            i.invalid_reason,
            case
                when o.order_id is null then 'order not found'
                when o.invalid_reason is not null then 'order rejected: ' || o.invalid_reason
                when p.product_id is null then 'unknown product'
            end
        ) as invalid_reason,
        'order_items' as source_table,
        i._source_file,
        i._source_row
    from items as i
    left join orders as o on o.order_id = i.order_id
    left join products as p on p.product_id = i.product_id
    left join customer_keys as ck on ck.node_key = 'crm:' || o.customer_id
),

pos_lines as (
    select
        t.transaction_line_id as order_item_id,
        t.receipt_id as order_id,
        'pos' as channel,
        ck.customer_key,
        cast(null as {{ dbt.type_string() }}) as source_customer_id,
        t.product_id,
        abs(t.quantity) as quantity,
        t.unit_price,
        t.currency,
        cast(t.unit_price * t.rate_to_base as decimal(18, 2)) as unit_price_base,
        case when t.quantity < 0 then 'returned' else 'completed' end as status,
        t.transacted_at as ordered_at,
        coalesce(t.invalid_reason, case when p.product_id is null then 'unknown product' end) as invalid_reason,
        'pos_transactions' as source_table,
        t._source_file,
        t._source_row
    from {{ ref('stg_pos_transactions') }} as t
    left join products as p on p.product_id = t.product_id
    left join customer_keys as ck on ck.node_key = 'pos:' || t.receipt_id
)

select * from web_lines
union all
select * from pos_lines
