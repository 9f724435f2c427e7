-- The session index (tessera/publish/sessions.py): one row per (web session, product) of the
-- recent clickstream, anonymous sessions included, in the order the session first touched the
-- product. Sessions are numbered by start (1 = the oldest kept); no session, cookie or customer
-- id is published. Only active products (dim_products.is_active) count: a discontinued one
-- must not be recommended. $lookback_days: sessions starting within that many days of the
-- latest event; $max_sessions: at most that many of the most recent sessions.
with

product_events as (
    select e.session_id, e.product_id, e.event_at, e.event_id
    from marts.fct_events as e
    inner join marts.dim_products as p on p.product_id = e.product_id and p.is_active
    where e.event_type in ('product_view', 'add_to_cart', 'purchase')
        and e.session_id is not null
),

firsts as (
    select session_id, product_id, min(event_at) as first_at, min(event_id) as first_event_id
    from product_events
    group by session_id, product_id
),

sessions as (
    select session_id, min(first_at) as session_start
    from firsts
    group by session_id
),

recent as (
    select
        session_id,
        session_start,
        row_number() over (order by session_start desc, session_id desc) as newest_first
    from sessions
    where session_start >= (select max(session_start) from sessions) - to_days(cast($lookback_days as integer))
)

select
    cast(dense_rank() over (order by r.session_start, r.session_id) as bigint) as session_number,
    f.product_id,
    cast(row_number() over (partition by f.session_id order by f.first_at, f.first_event_id) as integer) as position,
    r.session_start
from firsts as f
inner join recent as r on r.session_id = f.session_id
where r.newest_first <= $max_sessions
order by r.session_start, r.session_id, position
