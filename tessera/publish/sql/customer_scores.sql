-- publish.customer_scores: RFM values, purchase propensity and churn risk, with percentiles
with scores as (
    select
        customer_pkey(s.customer_key) as customer_pkey,
        s.recency_days,
        s.frequency,
        s.monetary,
        s.average_order_value,
        s.tenure_days,
        s.r_score + s.f_score + s.m_score as rfm_score,
        p.purchase_propensity_30d,
        p.churn_risk_30d,
        p.purchase_propensity_30d_run_id as purchase_model_run_id,
        p.churn_risk_30d_run_id as churn_model_run_id,
        s.as_of_date
    from marts.customer_rfm as s
    inner join audiences.active_customers as c on c.customer_key = s.customer_key
    left join ml.propensity_scores as p on p.customer_key = s.customer_key
)
select
    *,
    round(100 * percent_rank() over (order by purchase_propensity_30d), 1) as purchase_propensity_percentile,
    case when churn_risk_30d is not null then round(100 * percent_rank() over (
        partition by churn_risk_30d is null order by churn_risk_30d), 1) end as churn_risk_percentile
from scores
order by customer_pkey
