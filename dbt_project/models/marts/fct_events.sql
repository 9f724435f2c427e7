{#- One row per usable clickstream event. customer_key comes from the login on the event, or else
    from the cookie: anonymous events before a login attach to the person.

    A view: the events themselves are processed once (int_events, incremental by file), and the
    keys they attach to are always the current identity graph's. A merge of two customers, or a
    cookie that logs in today, re-attaches old events without rewriting them. -#}
{{ config(materialized='view') }}

with

events as (
    select * from {{ ref('int_events') }}
)

select
    e.event_id,
    e.event_type,
    e.event_at,
    e.session_id,
    e.anonymous_id,
    coalesce(kc.customer_key, ka.customer_key) as customer_key,
    case
        when kc.customer_key is not null then 'login'
        when ka.customer_key is not null then 'cookie'
        else 'anonymous'
    end as identified_by,
    e.product_id,
    e.device,
    e.referrer,
    e.country_code
from events as e
left join {{ tessera.identity_nodes(['crm']) }} as kc on kc.node_key = 'crm:' || e.customer_id
left join {{ tessera.identity_nodes(['cookie']) }} as ka on ka.node_key = 'cookie:' || e.anonymous_id
