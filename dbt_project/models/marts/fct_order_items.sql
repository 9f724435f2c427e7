{#- One row per order line, web, app and store together, in the base currency, attached to the
    current identity graph's customer (see fct_orders). Quantities are signed: a returned line has
    a negative quantity and a negative line_total_base. line_type: sale, return, stock_adjustment
    (returned at price 0: a write-off) or non_sale (postage, fees, vouchers, adjustments, test
    items); only sale lines are purchases. -#}
with

lines as (
    select * from {{ ref('int_order_lines') }} where invalid_reason is null
),

keys as (
    select node_key, customer_key from {{ tessera.identity_nodes(['crm', 'pos']) }} as n
)

select
    l.order_item_id,
    l.order_id,
    l.channel,
    k.customer_key,
    l.product_id,
    l.quantity,
    l.unit_price,
    l.currency,
    l.unit_price_base,
    cast(l.quantity * l.unit_price_base as decimal(18, 2)) as line_total_base,
    l.line_type,
    l.status,
    l.ordered_at
from lines as l
left join keys as k on k.node_key = {{ tessera.order_line_node_key('l') }}
