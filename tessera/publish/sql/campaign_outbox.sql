-- publish.campaign_outbox: the messages to send, to treatment customers with the channel's consent.
-- channel_consents: the catalogue's channel -> (consent channel, purpose) relation
-- (tessera/decisioning/catalogue.py CHANNEL_CONSENT_SQL)
select m.message_id, customer_pkey(m.customer_key) as customer_pkey, m.channel, m.action_id, m.variant_id,
    m.subject, m.body_ref, m.content_type, m.decided_on
from decisioning.messages as m
inner join decisioning.decisions as d
    on d.message_id = m.message_id and d.decision = 'send' and d.holdout_group = 'treatment'
inner join audiences.active_customers as c on c.customer_key = m.customer_key
inner join ({channel_consents}) as x on x.channel = m.channel
inner join audiences.consented_customers as k
    on k.customer_key = m.customer_key and k.channel = x.consent_channel and k.purpose = x.consent_purpose
order by m.message_id
