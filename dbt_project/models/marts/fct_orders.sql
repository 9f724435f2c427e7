{#- One row per order: web and app orders and store receipts. Totals count only usable lines.
    customer_key is the current identity graph's: from the CRM customer on a web or app order, from
    the receipt's links for a store receipt. -#}
with

lines as (
    select * from {{ ref('int_order_lines') }} where invalid_reason is null
),

keys as (
    select node_key, customer_key from {{ ref('int_identities_resolved') }}
)

select
    l.order_id,
    {{ tessera.latest_value('l.channel', 'l.ordered_at') }} as channel,
    max(k.customer_key) as customer_key,
    min(l.status) as status,
    min(l.currency) as currency,
    min(l.ordered_at) as ordered_at,
    count(*) as line_count,
    sum(l.quantity) as item_quantity,
    cast(sum(l.quantity * l.unit_price_base) as decimal(18, 2)) as order_total_base
from lines as l
left join keys as k on k.node_key = {{ tessera.order_line_node_key('l') }}
group by l.order_id
