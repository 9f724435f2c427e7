{#- One row per order line, web, app and store together, in the base currency. -#}
select
    order_item_id,
    order_id,
    channel,
    customer_key,
    product_id,
    quantity,
    unit_price,
    currency,
    unit_price_base,
    cast(quantity * unit_price_base as decimal(18, 2)) as line_total_base,
    status,
    ordered_at
from {{ ref('int_order_lines_unioned') }}
where invalid_reason is null
