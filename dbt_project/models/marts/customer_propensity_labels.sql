{#- Labels for point-in-time propensity models, one row per customer and snapshot whose next 30
    days are fully observed (as_of_date + 30 <= the current as-of date):
      purchased_next_30d: a completed order in [as_of_date, as_of_date + 30)
      churned_next_30d:   a previous buyer with neither an order nor a visit in that window -#}
with

snapshots as (
    select customer_key, as_of_date, frequency
    from {{ ref('customer_feature_snapshots') }}
    where {{ dbt.dateadd('day', 30, 'as_of_date') }} <= {{ tessera.as_of_date() }}
),

orders as (
    select customer_key, ordered_at from {{ ref('fct_orders') }} where customer_key is not null and status = 'completed'
),

visits as (
    select customer_key, event_at from {{ ref('fct_events') }} where customer_key is not null
),

next_orders as (
    select s.customer_key, s.as_of_date, count(*) as n
    from snapshots as s
    inner join orders as o
        on o.customer_key = s.customer_key
        and o.ordered_at >= s.as_of_date
        and o.ordered_at < {{ dbt.dateadd('day', 30, 's.as_of_date') }}
    group by s.customer_key, s.as_of_date
),

next_visits as (
    select s.customer_key, s.as_of_date, count(*) as n
    from snapshots as s
    inner join visits as v
        on v.customer_key = s.customer_key
        and v.event_at >= s.as_of_date
        and v.event_at < {{ dbt.dateadd('day', 30, 's.as_of_date') }}
    group by s.customer_key, s.as_of_date
)

select
    s.customer_key,
    s.as_of_date,
    coalesce(o.n, 0) > 0 as purchased_next_30d,
    case when s.frequency > 0 then coalesce(o.n, 0) = 0 and coalesce(v.n, 0) = 0 end as churned_next_30d
from snapshots as s
left join next_orders as o on o.customer_key = s.customer_key and o.as_of_date = s.as_of_date
left join next_visits as v on v.customer_key = s.customer_key and v.as_of_date = s.as_of_date
