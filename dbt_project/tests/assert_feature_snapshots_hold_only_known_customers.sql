-- Point-in-time populations: a snapshot holds only customers known before its cutoff. A customer
-- created after a cutoff once appeared in that past snapshot with a negative tenure, which gave
-- the propensity label away (issue 32: AUC 0.996 on a marketplace sample). Checked against the
-- customer's earliest signup and order directly, not only against the model's own first_known_at.
with first_seen as (
    select customer_key, min(known_at) as first_seen_at
    from (
        select customer_key, first_signup_at as known_at from {{ ref('dim_customers') }}
        union all
        select customer_key, ordered_at from {{ ref('fct_orders') }} where customer_key is not null
    ) as t
    group by customer_key
)

select s.customer_key, s.as_of_date, s.first_known_at, f.first_seen_at, s.tenure_days
from {{ ref('customer_feature_snapshots') }} as s
left join first_seen as f on f.customer_key = s.customer_key
where s.first_known_at >= s.as_of_date
   or f.first_seen_at >= s.as_of_date
   or s.tenure_days < 0
   or (s.offset_days > 0 and s.first_known_at is null)
