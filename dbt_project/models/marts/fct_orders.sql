{#- One row per order: web and app orders and store receipts. Totals count only usable lines. -#}
select
    order_id,
    {{ tessera.latest_value('channel', 'ordered_at') }} as channel,
    max(customer_key) as customer_key,
    min(status) as status,
    min(currency) as currency,
    min(ordered_at) as ordered_at,
    count(*) as line_count,
    sum(quantity) as item_quantity,
    cast(sum(quantity * unit_price_base) as decimal(18, 2)) as order_total_base
from {{ ref('int_order_lines_unioned') }}
where invalid_reason is null
group by order_id
