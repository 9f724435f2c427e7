{#- Usable privacy requests (consent and erasure) with the customer they concern: the CRM id when
    the identity graph knows it, else the email. customer_key is null for a request nobody in the
    graph matches (kept: the person may appear later). -#}
select
    p.request_id,
    coalesce(rc.customer_key, re.customer_key) as customer_key,
    p.request_type,
    p.channel,
    p.purpose,
    p.granted,
    p.requested_at
from {{ ref('stg_privacy') }} as p
left join {{ tessera.identity_nodes(['crm']) }} as rc on rc.node_key = 'crm:' || p.customer_id
left join {{ tessera.identity_nodes(['email']) }} as re on re.node_key = 'email:' || p.email
where p.invalid_reason is null
