{#- Labels for point-in-time propensity models, one row per customer and snapshot whose next 30
    days are fully observed (offset >= 30, i.e. as_of_date + 30 <= the current as-of date):
      purchased_next_30d: a completed order in [as_of_date, as_of_date + 30)
      churned_next_30d:   a previous buyer with neither an order nor a visit in that window
    Orders and visits are each read once and flagged per snapshot window with one conditional
    aggregate per snapshot (see customer_feature_snapshots). -#}
{%- set horizon = 30 -%}
{%- set offsets = var('feature_snapshot_offsets_days') | map('int') | select('ge', horizon) | list -%}
with

as_of as (
    select {{ tessera.as_of_date() }} as as_of_date
),

bounds as (
    select
        {%- for d in offsets %}
        cast({{ dbt.dateadd('day', -d, 'a.as_of_date') }} as date) as cutoff_{{ d }},
        cast({{ dbt.dateadd('day', horizon - d, 'a.as_of_date') }} as date) as label_end_{{ d }}{{ ',' if not loop.last }}
        {%- endfor %}
    from as_of as a
),

next_orders as (
    select
        o.customer_key,
        {%- for d in offsets %}
        max(case when o.ordered_at >= b.cutoff_{{ d }} and o.ordered_at < b.label_end_{{ d }} then 1 else 0 end) as ordered_{{ d }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ ref('fct_orders') }} as o
    cross join bounds as b
    where o.customer_key is not null and o.status = 'completed'
    group by o.customer_key
),

next_visits as (
    select
        v.customer_key,
        {%- for d in offsets %}
        max(case when v.event_at >= b.cutoff_{{ d }} and v.event_at < b.label_end_{{ d }} then 1 else 0 end) as visited_{{ d }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ ref('fct_events') }} as v
    cross join bounds as b
    where v.customer_key is not null
    group by v.customer_key
),

offsets as (
    {{ tessera.snapshot_offsets(offsets) }}
),

labelled as (
    select
        s.customer_key,
        s.as_of_date,
        s.frequency,
        coalesce({{ tessera.pick_snapshot(offsets, 'o.ordered_{o}') }}, 0) as ordered,
        coalesce({{ tessera.pick_snapshot(offsets, 'v.visited_{o}') }}, 0) as visited
    from {{ ref('customer_feature_snapshots') }} as s
    inner join offsets as snap on snap.offset_days = s.offset_days
    left join next_orders as o on o.customer_key = s.customer_key
    left join next_visits as v on v.customer_key = s.customer_key
)

select
    customer_key,
    as_of_date,
    ordered = 1 as purchased_next_30d,
    case when frequency > 0 then ordered = 0 and visited = 0 end as churned_next_30d
from labelled
