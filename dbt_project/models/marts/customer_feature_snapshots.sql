{#- Customer features computed as of several cutoffs (grain: customer x as_of_date). Every input
    is filtered to events strictly before its snapshot's as_of_date, so a snapshot can be rebuilt
    for any past cutoff and a model trained on it sees nothing from after the cutoff; the test
    assert_feature_snapshots_do_not_leak checks last_input_at < as_of_date.
    The population is point in time too: a customer is in a snapshot only if first known (signup
    or order; a visit or email event only for a profile with neither) strictly before its cutoff (first_known_at; the test
    assert_feature_snapshots_hold_only_known_customers). tenure_days counts from first_known_at.
    Cutoffs: as_of_date() minus each var('feature_snapshot_offsets_days'). Browsing and email
    features use a trailing window of var('feature_window_days').

    Shape, for scale: each source is read once and aggregated once per customer (clickstream first
    per session-day, categories per customer and category), with one conditional aggregate per
    snapshot: `x_<offset>` only counts rows inside that snapshot's window. Nothing is joined to
    the snapshots before aggregating, so the cost grows with the events, not events x snapshots.
    At the end each customer row is repeated per snapshot and picks that snapshot's columns
    (tessera.pick_snapshot), so every aggregate is computed once and read once. -#}
{%- set window = var('feature_window_days') | int -%}
{%- set offsets = var('feature_snapshot_offsets_days') | map('int') | list -%}
with

as_of as (
    select {{ tessera.as_of_date() }} as as_of_date
),

-- one row: each snapshot's cutoff and the start of its trailing window
bounds as (
    select
        {%- for d in offsets %}
        cast({{ dbt.dateadd('day', -d, 'a.as_of_date') }} as date) as cutoff_{{ d }},
        cast({{ dbt.dateadd('day', -(d + window), 'a.as_of_date') }} as date) as window_start_{{ d }}{{ ',' if not loop.last }}
        {%- endfor %}
    from as_of as a
),

-- fct_orders has one row per order, so counting rows counts orders. All history before the cutoff.
-- Orders are the completed ones; value is net of returns (net_revenue_base of every order: a
-- credit note or a returned order takes back what its sale added), and return_rate is the share of
-- sold value given back.
order_features as (
    select
        o.customer_key,
        {%- for d in offsets %}
        {%- set before = 'o.ordered_at < b.cutoff_' ~ d %}
        {%- set sale = before ~ " and o.status = 'completed'" %}
        max(case when {{ sale }} then o.ordered_at end) as last_order_at_{{ d }},
        min(case when {{ sale }} then o.ordered_at end) as first_order_at_{{ d }},
        sum(case when {{ sale }} then 1 else 0 end) as frequency_{{ d }},
        sum(case when {{ before }} then o.net_revenue_base end) as monetary_{{ d }},
        sum(case when {{ before }} then o.gross_sales_base end) as gross_sales_{{ d }},
        sum(case when {{ before }} then o.returned_base end) as returned_{{ d }},
        sum(case when {{ sale }} and o.channel = 'web' then 1 else 0 end) as web_orders_{{ d }},
        sum(case when {{ sale }} and o.channel = 'app' then 1 else 0 end) as app_orders_{{ d }},
        sum(case when {{ sale }} and o.channel = 'pos' then 1 else 0 end) as pos_orders_{{ d }},
        sum(case when {{ sale }} and o.ordered_at >= {{ dbt.dateadd('day', -30, 'b.cutoff_' ~ d) }} then 1 else 0 end) as orders_last_30d_{{ d }},
        sum(case when {{ sale }} and o.ordered_at >= {{ dbt.dateadd('day', -90, 'b.cutoff_' ~ d) }} then 1 else 0 end) as orders_last_90d_{{ d }},
        max(case when {{ before }} then o.ordered_at end) as last_document_at_{{ d }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ ref('fct_orders') }} as o
    cross join bounds as b
    where o.customer_key is not null and o.status in ('completed', 'returned')
    group by o.customer_key
),

-- Sessions are split at midnight (UTC), as Google Analytics did: a session-day is one session's
-- events on one calendar day. Cutoffs fall on midnights, so every session-day lies wholly inside or
-- outside each snapshot's window, and the events are read and grouped once, not once per snapshot.
-- A session-day's device is its max(device): sessions come from one device, and a mixed one gets
-- a fixed pick.
session_days as (
    select
        customer_key,
        session_id,
        cast(event_at as date) as event_date,
        min(event_at) as started_at,
        max(event_at) as ended_at,
        max(case when event_type = 'add_to_cart' then 1 else 0 end) as had_cart,
        max(case when event_type = 'purchase' then 1 else 0 end) as had_purchase,
        sum(case when event_type = 'product_view' then 1 else 0 end) as product_views,
        sum(case when event_type = 'add_to_cart' then 1 else 0 end) as cart_adds,
        sum(case when device = 'mobile' then 1 else 0 end) as mobile_events,
        count(*) as events,
        max(device) as device,
        {{ dbt.datediff("cast('1970-01-01' as timestamp)", 'min(event_at)', 'second') }} as started_second
    from {{ ref('fct_events') }} as e
    where e.customer_key is not null
    group by customer_key, session_id, cast(event_at as date)
),

session_features as (
    select
        d.customer_key,
        {%- for o in offsets %}
        {%- set w = tessera.in_snapshot_window('d.event_date', o) %}
        sum(case when {{ w }} then 1 else 0 end) as sessions_{{ o }},
        sum(case when {{ w }} then {{ dbt.datediff('d.started_at', 'd.ended_at', 'second') }} end) as time_on_site_seconds_{{ o }},
        max(case when {{ w }} then d.ended_at end) as last_visit_at_{{ o }},
        -- the latest cart session as one integer, start second * 2 + purchased: a plain max finds it
        -- (a tie on the second prefers 'purchased', as latest_value's (time, status) order does)
        max(case when {{ w }} and d.had_cart = 1 then d.started_second * 2 + d.had_purchase end) as last_cart_key_{{ o }},
        sum(case when {{ w }} then d.product_views end) as product_views_{{ o }},
        sum(case when {{ w }} then d.cart_adds end) as cart_adds_{{ o }},
        {{ tessera.latest_value('case when ' ~ w ~ ' then d.device end', 'case when ' ~ w ~ ' then d.ended_at end') }} as last_device_{{ o }},
        sum(case when {{ w }} then d.mobile_events end) * 1.0 / nullif(sum(case when {{ w }} then d.events end), 0) as mobile_event_share_{{ o }}{{ ',' if not loop.last }}
        {%- endfor %}
    from session_days as d
    cross join bounds as b
    group by d.customer_key
),

category_touches as (
    select
        e.customer_key,
        p.category,
        {%- for d in offsets %}
        sum(case when {{ tessera.in_snapshot_window('e.event_at', d) }} then 1 else 0 end) as touches_{{ d }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ ref('fct_events') }} as e
    inner join {{ ref('dim_products') }} as p on p.product_id = e.product_id
    cross join bounds as b
    where e.customer_key is not null
      and e.event_type in ('product_view', 'add_to_cart')
    group by e.customer_key, p.category
),

category_features as (
    select
        customer_key,
        {%- for d in offsets %}
        {%- set touched = 'touches_' ~ d ~ ' > 0' %}
        {{ tessera.latest_value('case when ' ~ touched ~ ' then category end', 'case when ' ~ touched ~ ' then touches_' ~ d ~ ' end') }} as top_category_{{ d }},
        max(touches_{{ d }}) * 1.0 / nullif(sum(touches_{{ d }}), 0) as top_category_share_{{ d }},
        count(case when {{ touched }} then 1 end) as categories_browsed_{{ d }}{{ ',' if not loop.last }}
        {%- endfor %}
    from category_touches
    group by customer_key
),

email_keys as (
    select node_value as email, customer_key
    from {{ ref('int_identities_resolved') }}
    where node_type = 'email'
),

email_features as (
    select
        k.customer_key,
        {%- for d in offsets %}
        {%- set w = tessera.in_snapshot_window('m.event_at', d) %}
        sum(case when {{ w }} and m.event_type = 'sent' then 1 else 0 end) as emails_sent_{{ d }},
        sum(case when {{ w }} and m.event_type = 'open' then 1 else 0 end) as emails_opened_{{ d }},
        sum(case when {{ w }} and m.event_type = 'click' then 1 else 0 end) as emails_clicked_{{ d }},
        max(case when {{ w }} then m.event_at end) as last_email_event_at_{{ d }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ ref('stg_email_events') }} as m
    inner join email_keys as k on k.email = m.email
    cross join bounds as b
    where m.invalid_reason is null
    group by k.customer_key
),

-- When each customer became a customer: the earliest of the CRM signup and any order (whatever
-- its status: a cancelled order still proves the customer existed). Only for a profile with
-- neither, the first identified visit or email event. A customer is in a snapshot only if known
-- strictly before its cutoff, so no snapshot holds a customer who did not exist yet (whose negative
-- tenure gave the propensity label away). Browsing before signing up does not count: at the
-- cutoff, that cookie was nobody's yet.
known as (
    select
        customer_key,
        coalesce(
            min(case when evidence = 'customer' then known_at end),
            min(case when evidence = 'activity' then known_at end)
        ) as first_known_at
    from (
        select customer_key, 'customer' as evidence, first_signup_at as known_at from {{ ref('dim_customers') }}
        union all
        select customer_key, 'customer', min(ordered_at) from {{ ref('fct_orders') }} where customer_key is not null group by customer_key
        union all
        select customer_key, 'activity', min(event_at) from {{ ref('fct_events') }} where customer_key is not null group by customer_key
        union all
        select k.customer_key, 'activity', min(m.event_at)
        from {{ ref('stg_email_events') }} as m
        inner join email_keys as k on k.email = m.email
        where m.invalid_reason is null
        group by k.customer_key
    ) as first_seen
    group by customer_key
),

offsets as (
    {{ tessera.snapshot_offsets(offsets) }}
)

{%- set pick = tessera.pick_snapshot %}
select
    c.customer_key,
    {{ pick(offsets, 'b.cutoff_{o}') }} as as_of_date,
    snap.offset_days,
    -- value
    {{ pick(offsets, dbt.datediff('o.last_order_at_{o}', 'b.cutoff_{o}', 'day')) }} as recency_days,
    {{ pick(offsets, 'coalesce(o.frequency_{o}, 0)') }} as frequency,
    {{ pick(offsets, 'cast(coalesce(o.monetary_{o}, 0) as double)') }} as monetary,
    {{ pick(offsets, 'cast(o.monetary_{o} / nullif(o.frequency_{o}, 0) as double)') }} as average_order_value,
    -- divided as doubles: a decimal quotient keeps a different number of digits on Spark than on DuckDB
    {{ pick(offsets, 'coalesce(cast(o.returned_{o} as double) / nullif(cast(o.gross_sales_{o} as double), 0), 0)') }} as return_rate,
    {{ pick(offsets, dbt.datediff('k.first_known_at', 'b.cutoff_{o}', 'day')) }} as tenure_days,
    {{ pick(offsets, 'coalesce(o.orders_last_30d_{o}, 0)') }} as orders_last_30d,
    {{ pick(offsets, 'coalesce(o.orders_last_90d_{o}, 0)') }} as orders_last_90d,
    -- channel mix
    {{ pick(offsets, 'coalesce(o.web_orders_{o} * 1.0 / nullif(o.frequency_{o}, 0), 0)') }} as web_order_share,
    {{ pick(offsets, 'coalesce(o.app_orders_{o} * 1.0 / nullif(o.frequency_{o}, 0), 0)') }} as app_order_share,
    {{ pick(offsets, 'coalesce(o.pos_orders_{o} * 1.0 / nullif(o.frequency_{o}, 0), 0)') }} as pos_order_share,
    -- browsing (trailing window)
    {{ pick(offsets, 'coalesce(s.sessions_{o}, 0)') }} as sessions,
    {{ pick(offsets, 'coalesce(s.time_on_site_seconds_{o}, 0)') }} as time_on_site_seconds,
    {{ pick(offsets, 'coalesce(s.product_views_{o}, 0)') }} as product_views,
    {{ pick(offsets, 'coalesce(s.cart_adds_{o}, 0)') }} as cart_adds,
    {{ pick(offsets, "coalesce(s.last_device_{o}, 'unknown')") }} as last_device,
    {{ pick(offsets, 'coalesce(s.mobile_event_share_{o}, 0)') }} as mobile_event_share,
    {{ pick(offsets, dbt.datediff('s.last_visit_at_{o}', 'b.cutoff_{o}', 'day')) }} as days_since_last_visit,
    {{ pick(offsets, "case when s.last_cart_key_{o} is null then 'none' when mod(s.last_cart_key_{o}, 2) = 1 then 'purchased' else 'abandoned' end") }} as last_cart_status,
    -- category affinity
    {{ pick(offsets, "coalesce(cf.top_category_{o}, 'none')") }} as top_category,
    {{ pick(offsets, 'coalesce(cf.top_category_share_{o}, 0)') }} as top_category_share,
    {{ pick(offsets, 'coalesce(cf.categories_browsed_{o}, 0)') }} as categories_browsed,
    -- email engagement (trailing window)
    {{ pick(offsets, 'coalesce(m.emails_sent_{o}, 0)') }} as emails_sent,
    {{ pick(offsets, 'coalesce(m.emails_opened_{o} * 1.0 / nullif(m.emails_sent_{o}, 0), 0)') }} as email_open_rate,
    {{ pick(offsets, 'coalesce(m.emails_clicked_{o} * 1.0 / nullif(m.emails_sent_{o}, 0), 0)') }} as email_click_rate,
    -- leakage guard: the latest input timestamp any feature used
    {{ pick(offsets, "greatest(
        coalesce(o.last_document_at_{o}, cast('1900-01-01' as timestamp)),
        coalesce(s.last_visit_at_{o}, cast('1900-01-01' as timestamp)),
        coalesce(m.last_email_event_at_{o}, cast('1900-01-01' as timestamp))
    )") }} as last_input_at,
    k.first_known_at
from {{ ref('dim_customers') }} as c
cross join bounds as b
cross join offsets as snap
left join known as k on k.customer_key = c.customer_key
left join order_features as o on o.customer_key = c.customer_key
left join session_features as s on s.customer_key = c.customer_key
left join category_features as cf on cf.customer_key = c.customer_key
left join email_features as m on m.customer_key = c.customer_key
-- a customer with no timestamp at all (no signup date, order, visit or email) is known today, by
-- the delivery that holds them, and at no earlier cutoff
where coalesce(k.first_known_at < {{ pick(offsets, 'b.cutoff_{o}') }}, snap.offset_days = 0)
