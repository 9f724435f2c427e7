{#- Per-customer recency, frequency and monetary value as of a date, with scores 1..5 and the
    named RFM segment (macros/rfm.sql, docs/rfm.md). Customers with equal values share the lower
    score of their tie; one order is always F = 1. Monetary is net of returns. One-time buyers get a segment by recency alone
    (never Champions, Loyal or Can't Lose Them); repeat buyers the (R, FM) cell of
    seeds/rfm_segment_map.csv. Customers without a completed order before the as-of date get the
    segment 'Prospect' and no scores. -#}
{%- set as_of = var('as_of_date') -%}
with

-- completed orders count and date; monetary is net of returns: every order's net_revenue_base, so
-- a credit note or a returned order takes back what its sale added (fct_orders)
orders as (
    select customer_key, order_id, status, ordered_at, net_revenue_base
    from {{ ref('fct_orders') }}
    where customer_key is not null and status in ('completed', 'returned')
),

-- a customer who asked for erasure is not in the population the scores rank: the run that erases
-- them scores everyone else as the next run, built without them, will (customer_rec_user_features
-- does the same)
erased as (
    select customer_key from {{ ref('dim_customers') }} where is_erasure_requested
),

as_of as (
    {% if as_of %}
    select cast('{{ as_of }}' as date) as as_of_date
    {% else %}
    select cast({{ dbt.dateadd('day', 1, tessera.latest_activity('max(ordered_at)')) }} as date) as as_of_date from orders where status = 'completed'
    {% endif %}
),

per_customer as (
    select
        o.customer_key,
        max(case when o.status = 'completed' then o.ordered_at end) as last_order_at,
        min(case when o.status = 'completed' then o.ordered_at end) as first_order_at,
        count(distinct case when o.status = 'completed' then o.order_id end) as frequency,
        cast(sum(o.net_revenue_base) as decimal(18, 2)) as monetary
    from orders as o
    cross join as_of as a
    where o.ordered_at < a.as_of_date and o.customer_key not in (select customer_key from erased)
    group by o.customer_key
    having count(distinct case when o.status = 'completed' then o.order_id end) > 0
),

measured as (
    select
        p.*,
        {{ dbt.datediff('p.last_order_at', 'a.as_of_date', 'day') }} as recency_days,
        {{ dbt.datediff('p.first_order_at', 'a.as_of_date', 'day') }} as tenure_days,
        cast(p.monetary / p.frequency as decimal(18, 2)) as average_order_value
    from per_customer as p
    cross join as_of as a
),

scored as (
    select
        *,
        {{ tessera.rfm_score('recency_days', 'desc') }} as r_score,
        {{ tessera.frequency_score('frequency') }} as f_score,
        {{ tessera.rfm_score('monetary') }} as m_score
    from measured
),

segment_map as (
    select r_score, fm_score, rfm_segment from {{ ref('rfm_segment_map') }}
)

select
    c.customer_key,
    a.as_of_date,
    s.recency_days,
    coalesce(s.frequency, 0) as frequency,
    coalesce(s.monetary, 0) as monetary,
    s.average_order_value,
    s.tenure_days,
    s.r_score,
    s.f_score,
    s.m_score,
    {{ tessera.fm_score('s.f_score', 's.m_score') }} as fm_score,
    {{ tessera.rfm_segment('s.frequency', 's.r_score', 'm.rfm_segment') }} as rfm_segment
from {{ ref('dim_customers') }} as c
cross join as_of as a
left join scored as s on s.customer_key = c.customer_key
left join segment_map as m
    on m.r_score = s.r_score
    and m.fm_score = {{ tessera.fm_score('s.f_score', 's.m_score') }}
