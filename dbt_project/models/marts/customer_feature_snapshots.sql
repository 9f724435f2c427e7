{#- Customer features computed as of several cutoffs (grain: customer x as_of_date). Every input
    is filtered to events strictly before its snapshot's as_of_date, so a snapshot can be rebuilt
    for any past cutoff and a model trained on it sees nothing from after the cutoff; the test
    assert_feature_snapshots_do_not_leak checks last_input_at < as_of_date.
    Cutoffs: as_of_date() minus each var('feature_snapshot_offsets_days'). Browsing and email
    features use a trailing window of var('feature_window_days'). -#}
{%- set window = var('feature_window_days') | int -%}
with

offsets as (
    {%- for d in var('feature_snapshot_offsets_days') %}
    select {{ d | int }} as offset_days{{ ' union all' if not loop.last }}
    {%- endfor %}
),

snapshots as (
    select
        o.offset_days,
        cast({{ dbt.dateadd('day', '-1 * o.offset_days', tessera.as_of_date()) }} as date) as as_of_date
    from offsets as o
),

customers as (
    select c.customer_key, c.first_signup_at, s.offset_days, s.as_of_date
    from {{ ref('dim_customers') }} as c
    cross join snapshots as s
),

orders as (
    select customer_key, order_id, channel, ordered_at, order_total_base
    from {{ ref('fct_orders') }}
    where customer_key is not null and status = 'completed'
),

order_features as (
    select
        c.customer_key,
        c.as_of_date,
        max(o.ordered_at) as last_order_at,
        min(o.ordered_at) as first_order_at,
        count(distinct o.order_id) as frequency,
        sum(o.order_total_base) as monetary,
        count(distinct case when o.channel = 'web' then o.order_id end) as web_orders,
        count(distinct case when o.channel = 'app' then o.order_id end) as app_orders,
        count(distinct case when o.channel = 'pos' then o.order_id end) as pos_orders,
        count(distinct case when o.ordered_at >= {{ dbt.dateadd('day', -30, 'c.as_of_date') }} then o.order_id end) as orders_last_30d,
        count(distinct case when o.ordered_at >= {{ dbt.dateadd('day', -90, 'c.as_of_date') }} then o.order_id end) as orders_last_90d
    from customers as c
    inner join orders as o on o.customer_key = c.customer_key and o.ordered_at < c.as_of_date
    group by c.customer_key, c.as_of_date
),

events as (
    select customer_key, session_id, event_type, event_at, device, product_id
    from {{ ref('fct_events') }}
    where customer_key is not null
),

windowed_events as (
    select c.customer_key, c.as_of_date, e.*
    from customers as c
    inner join events as e
        on e.customer_key = c.customer_key
        and e.event_at < c.as_of_date
        and e.event_at >= {{ dbt.dateadd('day', -window, 'c.as_of_date') }}
),

sessions as (
    select
        customer_key,
        as_of_date,
        session_id,
        min(event_at) as started_at,
        max(event_at) as ended_at,
        max(case when event_type = 'add_to_cart' then 1 else 0 end) as had_cart,
        max(case when event_type = 'purchase' then 1 else 0 end) as had_purchase
    from windowed_events
    group by customer_key, as_of_date, session_id
),

session_features as (
    select
        customer_key,
        as_of_date,
        count(*) as sessions,
        sum({{ dbt.datediff('started_at', 'ended_at', 'second') }}) as time_on_site_seconds,
        max(ended_at) as last_visit_at,
        {{ tessera.latest_value("case when had_purchase = 1 then 'purchased' else 'abandoned' end", "case when had_cart = 1 then started_at end") }} as last_cart_status
    from sessions
    group by customer_key, as_of_date
),

event_features as (
    select
        customer_key,
        as_of_date,
        count(case when event_type = 'product_view' then 1 end) as product_views,
        count(case when event_type = 'add_to_cart' then 1 end) as cart_adds,
        {{ tessera.latest_value('device', 'event_at') }} as last_device,
        sum(case when device = 'mobile' then 1 else 0 end) * 1.0 / count(*) as mobile_event_share
    from windowed_events
    group by customer_key, as_of_date
),

category_touches as (
    select e.customer_key, e.as_of_date, p.category, count(*) as touches
    from windowed_events as e
    inner join {{ ref('dim_products') }} as p on p.product_id = e.product_id
    where e.event_type in ('product_view', 'add_to_cart')
    group by e.customer_key, e.as_of_date, p.category
),

category_features as (
    select
        customer_key,
        as_of_date,
        {{ tessera.latest_value('category', 'touches') }} as top_category,
        max(touches) * 1.0 / sum(touches) as top_category_share,
        count(*) as categories_browsed
    from category_touches
    group by customer_key, as_of_date
),

email_keys as (
    select node_value as email, customer_key
    from {{ ref('int_identities_resolved') }}
    where node_type = 'email'
),

email_features as (
    select
        c.customer_key,
        c.as_of_date,
        count(case when m.event_type = 'sent' then 1 end) as emails_sent,
        count(case when m.event_type = 'open' then 1 end) as emails_opened,
        count(case when m.event_type = 'click' then 1 end) as emails_clicked,
        max(m.event_at) as last_email_event_at
    from customers as c
    inner join email_keys as k on k.customer_key = c.customer_key
    inner join {{ ref('stg_email_events') }} as m
        on m.email = k.email
        and m.invalid_reason is null
        and m.event_at < c.as_of_date
        and m.event_at >= {{ dbt.dateadd('day', -window, 'c.as_of_date') }}
    group by c.customer_key, c.as_of_date
)

select
    c.customer_key,
    c.as_of_date,
    c.offset_days,
    -- value
    {{ dbt.datediff('o.last_order_at', 'c.as_of_date', 'day') }} as recency_days,
    coalesce(o.frequency, 0) as frequency,
    cast(coalesce(o.monetary, 0) as double) as monetary,
    cast(o.monetary / nullif(o.frequency, 0) as double) as average_order_value,
    {{ dbt.datediff('coalesce(o.first_order_at, c.first_signup_at)', 'c.as_of_date', 'day') }} as tenure_days,
    coalesce(o.orders_last_30d, 0) as orders_last_30d,
    coalesce(o.orders_last_90d, 0) as orders_last_90d,
    -- channel mix
    coalesce(o.web_orders * 1.0 / nullif(o.frequency, 0), 0) as web_order_share,
    coalesce(o.app_orders * 1.0 / nullif(o.frequency, 0), 0) as app_order_share,
    coalesce(o.pos_orders * 1.0 / nullif(o.frequency, 0), 0) as pos_order_share,
    -- browsing (trailing window)
    coalesce(s.sessions, 0) as sessions,
    coalesce(s.time_on_site_seconds, 0) as time_on_site_seconds,
    coalesce(e.product_views, 0) as product_views,
    coalesce(e.cart_adds, 0) as cart_adds,
    coalesce(e.last_device, 'unknown') as last_device,
    coalesce(e.mobile_event_share, 0) as mobile_event_share,
    {{ dbt.datediff('s.last_visit_at', 'c.as_of_date', 'day') }} as days_since_last_visit,
    coalesce(s.last_cart_status, 'none') as last_cart_status,
    -- category affinity
    coalesce(cf.top_category, 'none') as top_category,
    coalesce(cf.top_category_share, 0) as top_category_share,
    coalesce(cf.categories_browsed, 0) as categories_browsed,
    -- email engagement (trailing window)
    coalesce(m.emails_sent, 0) as emails_sent,
    coalesce(m.emails_opened * 1.0 / nullif(m.emails_sent, 0), 0) as email_open_rate,
    coalesce(m.emails_clicked * 1.0 / nullif(m.emails_sent, 0), 0) as email_click_rate,
    -- leakage guard: the latest input timestamp any feature used
    greatest(
        coalesce(o.last_order_at, cast('1900-01-01' as timestamp)),
        coalesce(s.last_visit_at, cast('1900-01-01' as timestamp)),
        coalesce(m.last_email_event_at, cast('1900-01-01' as timestamp))
    ) as last_input_at
from customers as c
left join order_features as o on o.customer_key = c.customer_key and o.as_of_date = c.as_of_date
left join session_features as s on s.customer_key = c.customer_key and s.as_of_date = c.as_of_date
left join event_features as e on e.customer_key = c.customer_key and e.as_of_date = c.as_of_date
left join category_features as cf on cf.customer_key = c.customer_key and cf.as_of_date = c.as_of_date
left join email_features as m on m.customer_key = c.customer_key and m.as_of_date = c.as_of_date
