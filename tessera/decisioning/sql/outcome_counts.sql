-- closed messages and conversions per action and variant; $window_days: the attribution window
with as_of as (
    select cast(max(as_of_date) as date) as as_of_date from marts.customer_rfm
),
closed as (
    select s.*
    from decisioning.sends as s
    where s.decided_on + to_days(cast($window_days as integer)) <= (select as_of_date from as_of)
),
clicked as (
    select distinct c.message_id
    from closed as c
    inner join staging.stg_email_events as e
        on e.campaign_id = c.message_id and e.event_type = 'click' and e.invalid_reason is null
        and e.event_at >= c.decided_on and e.event_at < c.decided_on + to_days(cast($window_days as integer))
),
bought as (
    select distinct c.message_id
    from closed as c
    inner join marts.fct_orders as o
        on o.customer_key = c.customer_key and o.status = 'completed'
        and o.ordered_at >= c.decided_on and o.ordered_at < c.decided_on + to_days(cast($window_days as integer))
)
select c.action_id, c.variant_id, count(*) as trials,
    count(*) filter (where c.message_id in (select message_id from clicked)
                      or c.message_id in (select message_id from bought)) as conversions
from closed as c
group by c.action_id, c.variant_id
