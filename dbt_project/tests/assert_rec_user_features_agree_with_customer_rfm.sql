{#- Reads several models; Dagster shows it as a check on customer_rec_user_features (dagster-dbt needs the name). -#}
{{ config(meta={'dagster': {'ref': {'name': 'customer_rec_user_features'}}}) }}
-- The recommender's point-in-time RFM bins and segment at today's snapshot are customer_rfm's:
-- both use the rfm_score / fm_score macros over the same completed orders before the same date.
-- Fails too when no snapshot shares customer_rfm's as_of_date (nothing would be compared), unless
-- customer_rfm is empty: a shop without any known customer (an anonymous clickstream) has no RFM.
with joined as (
    select
        f.customer_key,
        f.as_of_date,
        f.rfm_segment,
        r.rfm_segment as customer_rfm_segment,
        f.rfm_segment <> r.rfm_segment
        or f.r_bin <> coalesce(cast(r.r_score as {{ dbt.type_string() }}), 'none')
        or f.f_bin <> coalesce(cast(r.f_score as {{ dbt.type_string() }}), 'none')
        or f.m_bin <> coalesce(cast(r.m_score as {{ dbt.type_string() }}), 'none') as differs
    from {{ ref('customer_rec_user_features') }} as f
    inner join {{ ref('customer_rfm') }} as r
        on r.customer_key = f.customer_key and r.as_of_date = f.as_of_date
)

select customer_key, as_of_date, rfm_segment, customer_rfm_segment
from joined
where differs
union all
select null, null, 'no snapshot at customer_rfm.as_of_date', null
where not exists (select 1 from joined)
    and exists (select 1 from {{ ref('customer_rfm') }})
