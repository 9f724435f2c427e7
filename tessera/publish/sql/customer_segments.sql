-- publish.customer_segments: RFM, cluster and rule segment per customer, with each campaign's
-- holdout group (tessera/publish/holdout.py: the macro holdout_group, the threshold bound)
select
    customer_pkey(s.customer_key) as customer_pkey,
    s.rfm_segment,
    s.r_score,
    s.f_score,
    s.m_score,
    k.cluster_id,
    k.cluster_description,
    k.clustering_run_id,
    r.rule_segment,
    r.rule_segment_priority,
    holdout_group('rfm:' || s.rfm_segment, s.customer_key, $holdout_threshold) as rfm_holdout_group,
    holdout_group('rule:' || r.rule_segment, s.customer_key, $holdout_threshold) as rule_holdout_group,
    cast($holdout_share as double) as holdout_share,
    s.as_of_date
from marts.customer_rfm as s
inner join audiences.active_customers as c on c.customer_key = s.customer_key
left join ml.customer_clusters as k on k.customer_key = s.customer_key
left join marts.customer_rule_segments as r on r.customer_key = s.customer_key
order by customer_pkey
