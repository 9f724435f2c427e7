-- the propensity models' point-in-time features with their labels, every snapshot
select f.*, l.purchased_next_30d, l.churned_next_30d
from marts.customer_feature_snapshots as f
left join marts.customer_propensity_labels as l using (customer_key, as_of_date)
where f.customer_key not in (select customer_key from marts.dim_customers where is_erasure_requested)
order by f.as_of_date, f.customer_key
