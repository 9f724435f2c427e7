-- Violations: sends of {table} without the channel's consent, outside the treatment group of
-- campaign nba:<action> (recomputed from marts.customer_consents and the holdout), or without a
-- variant or message id; other decisions with one. The channel -> consent relation is the
-- catalogue's (tessera/decisioning/catalogue.py CHANNEL_CONSENT_SQL)
select count(*) from {table} as t
inner join ({channel_consents}) as m on m.channel = t.channel
inner join marts.dim_customers as c on customer_pkey(c.customer_key) = t.customer_pkey
left join marts.customer_consents as k
    on k.customer_key = c.customer_key and k.channel = m.consent_channel and k.purpose = m.consent_purpose
where (t.decision = 'send' and (not coalesce(k.granted, false)
        or holdout_group('nba:' || t.action_id, c.customer_key, $holdout_threshold) <> 'treatment'
        or t.variant_id is null or t.message_id is null))
   or (t.decision <> 'send' and (t.variant_id is not null or t.message_id is not null))
