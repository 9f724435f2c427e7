-- Violations: customer and channel pairs of {table} with more than one decision
select count(*) from (select customer_pkey, channel from {table} group by all having count(*) > 1)
