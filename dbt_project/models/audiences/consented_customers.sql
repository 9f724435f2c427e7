{#- Who may be reached for what (grain: customer_key x channel x purpose): the active customers
    and the channel and purpose pairs of customer_consents they have granted, and only those. -#}
select
    k.customer_key,
    k.channel,
    k.purpose
from {{ ref('customer_consents') }} as k
inner join {{ ref('active_customers') }} as a on a.customer_key = k.customer_key
where k.granted
