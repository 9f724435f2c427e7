{#- Implicit feedback for the recommender: one row per identified customer x product touch.
    Views and cart adds come from the clickstream, purchases from the sale lines of completed
    orders of every channel (not returns, write-offs, postage or fees), of merchandise only. Weights and time decay are decided in ml/, not here. -#}
with

products as (
    select product_id from {{ ref('dim_products') }} where product_type = 'merchandise'
),

clicks as (
    select
        customer_key,
        product_id,
        case event_type when 'product_view' then 'view' else 'cart' end as interaction_type,
        event_at as occurred_at,
        1 as quantity
    from {{ ref('fct_events') }}
    where customer_key is not null
      and product_id is not null
      and event_type in ('product_view', 'add_to_cart')
),

purchases as (
    select
        customer_key,
        product_id,
        'purchase' as interaction_type,
        ordered_at as occurred_at,
        quantity
    from {{ ref('fct_order_items') }}
    where customer_key is not null and status = 'completed' and line_type = 'sale'
),

unioned as (
    select * from clicks
    union all
    select * from purchases
)

select u.*
from unioned as u
inner join products as p on p.product_id = u.product_id
