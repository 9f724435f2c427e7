{#- Consent state per customer, channel and purpose (grain: customer_key x channel x purpose), for
    every pair of var('consent_purposes') and every resolved customer. The latest applicable
    record decides (a record for channel or purpose 'all' applies to each pair it covers; a revoke
    wins a tie); without one, the pair's default. -#}
with

matrix as (
    {{ tessera.consent_matrix() }}
),

customers as (
    select distinct customer_key from {{ ref('int_identities_resolved') }}
),

records as (
    select customer_key, request_id, channel, purpose, granted, requested_at
    from {{ ref('int_privacy_requests_resolved') }}
    where request_type = 'consent' and customer_key is not null
),

decided as (
    select
        c.customer_key,
        m.channel,
        m.purpose,
        m.default_granted,
        max_by(r.granted, {{ tessera.row_of('r.requested_at', 'not r.granted') }})
            filter (where r.request_id is not null) as recorded_granted,
        max_by(r.request_id, {{ tessera.row_of('r.requested_at', 'not r.granted') }})
            filter (where r.request_id is not null) as request_id,
        max(r.requested_at) as decided_at
    from customers as c
    cross join matrix as m
    left join records as r
        on r.customer_key = c.customer_key
        and r.channel in (m.channel, 'all')
        and r.purpose in (m.purpose, 'all')
    group by c.customer_key, m.channel, m.purpose, m.default_granted
)

select
    customer_key,
    channel,
    purpose,
    coalesce(recorded_granted, default_granted) as granted,
    recorded_granted is null as is_default,
    request_id,
    decided_at
from decided
