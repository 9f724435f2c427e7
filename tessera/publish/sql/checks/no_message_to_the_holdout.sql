-- Violations: messages of {table} to a customer in the control group of campaign nba:<action>,
-- recomputed from the customer key
select count(*) from {table} as t
inner join marts.dim_customers as c on customer_pkey(c.customer_key) = t.customer_pkey
where holdout_group('nba:' || t.action_id, c.customer_key, $holdout_threshold) <> 'treatment'
