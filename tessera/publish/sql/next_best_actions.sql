-- publish.next_best_actions: each customer's decision per channel (docs/decisioning.md)
select customer_pkey(d.customer_key) as customer_pkey, d.channel, d.action_id, d.variant_id, d.decision,
    d.decided_by, d.priority, d.score, d.holdout_group, d.eligible_actions, d.reason, d.message_id,
    d.bandit_state_version, d.decided_on
from decisioning.decisions as d
inner join audiences.active_customers as c on c.customer_key = d.customer_key
order by customer_pkey, d.channel
