-- The rendered body of every message of {table} (campaign_outbox), by message_id
select t.message_id, t.customer_pkey, t.body_ref, t.content_type, m.body
from {table} as t
inner join decisioning.messages as m on m.message_id = t.message_id
order by t.message_id
