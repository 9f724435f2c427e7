-- "Viewed together" baskets (ml/product_lists.py): one row per (browsing session, merchandise
-- product viewed). The clickstream's own session_id when the event has one; an event without one
-- is put in a session of its browser (anonymous_id, else the customer) that a 30-minute gap
-- between two views ends. Events of customers who asked for erasure are left out.
with views as (
    select
        e.session_id,
        coalesce(e.anonymous_id, cast(e.customer_key as string)) as visitor,
        e.product_id,
        e.event_at
    from marts.fct_events as e
    inner join marts.dim_products as p on p.product_id = e.product_id and p.product_type = 'merchandise'
    where e.event_type = 'product_view'
      and (e.customer_key is null or e.customer_key not in (select customer_key from marts.dim_customers where is_erasure_requested))
),
unsessioned as (
    select
        visitor,
        product_id,
        event_at,
        lag(event_at) over (partition by visitor order by event_at, product_id) as previous_at
    from views
    where session_id is null and visitor is not null
),
numbered as (
    select
        visitor,
        product_id,
        sum(case when previous_at is null or event_at > previous_at + interval '30' minute then 1 else 0 end) over (
            partition by visitor order by event_at, product_id rows between unbounded preceding and current row
        ) as session_number
    from unsessioned
)
select 'session:' || session_id as basket_id, product_id
from views
where session_id is not null
union all
select 'gap:' || visitor || ':' || cast(session_number as string) as basket_id, product_id
from numbered
