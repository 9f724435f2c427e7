{#- The unified customer view: one row per resolved person who has at least one CRM profile.
    Golden record: each attribute follows the survivorship rule in int_customer_attributes_survived
    (docs/identity.md), and <attribute>_source names the record that gave the value. -#}
with

profiles as (
    select
        r.customer_key,
        c.*
    from {{ ref('stg_customers') }} as c
    inner join {{ ref('int_identities_resolved') }} as r on r.node_key = 'crm:' || c.customer_id
    where c.invalid_reason is null
),

cluster_nodes as (
    select
        customer_key,
        sum(case when node_type = 'cookie' then 1 else 0 end) as cookie_count,
        sum(case when node_type = 'pos' then 1 else 0 end) as pos_receipt_count
    from {{ ref('int_identities_resolved') }}
    group by customer_key
),

privacy as (
    select
        coalesce(rc.customer_key, re.customer_key) as customer_key,
        p.request_type,
        p.channel,
        p.purpose,
        p.granted,
        p.requested_at
    from {{ ref('stg_privacy') }} as p
    left join {{ ref('int_identities_resolved') }} as rc on rc.node_key = 'crm:' || p.customer_id
    left join {{ ref('int_identities_resolved') }} as re on re.node_key = 'email:' || p.email
    where p.invalid_reason is null
),

consent as (
    select
        customer_key,
        {{ tessera.latest_value('granted', 'requested_at') }} as email_marketing_consent
    from privacy
    where request_type = 'consent' and channel in ('email', 'all') and purpose in ('marketing', 'all')
    group by customer_key
),

-- Personalisation is opt-out: without a record it is allowed; the latest personalization (or
-- 'all') consent record decides otherwise.
personalization as (
    select
        customer_key,
        {{ tessera.latest_value('granted', 'requested_at') }} as personalization_consent
    from privacy
    where request_type = 'consent' and purpose in ('personalization', 'all')
    group by customer_key
),

erasure as (
    select customer_key, max(requested_at) as erasure_requested_at
    from privacy
    where request_type = 'erasure'
    group by customer_key
),

profile_counts as (
    select
        customer_key,
        min(customer_id) as anchor_customer_id,
        count(distinct customer_id) as crm_profile_count,
        min(signup_at) as first_signup_at,
        max(updated_at) as last_profile_update_at
    from profiles
    group by customer_key
),

golden as (
    select
        p.*,
        s.first_name,
        s.first_name_source,
        s.last_name,
        s.last_name_source,
        s.email,
        s.email_source,
        s.phone_e164,
        s.phone_e164_source,
        cast(s.birth_date as date) as birth_date,
        s.birth_date_source,
        s.gender,
        s.gender_source,
        s.address,
        s.address_source,
        s.city,
        s.city_source,
        s.postcode,
        s.postcode_source,
        s.country_code,
        s.country_code_source,
        s.loyalty_card,
        s.loyalty_card_source
    from profile_counts as p
    left join {{ ref('int_customer_attributes_survived') }} as s on s.customer_key = p.customer_key
)

select
    g.customer_key,
    g.anchor_customer_id,
    g.crm_profile_count,
    g.first_name,
    g.last_name,
    g.email,
    g.phone_e164,
    g.birth_date,
    coalesce(g.gender, 'U') as gender,
    g.address,
    g.city,
    g.postcode,
    g.country_code,
    g.loyalty_card,
    coalesce(n.cookie_count, 0) as cookie_count,
    coalesce(n.pos_receipt_count, 0) as pos_receipt_count,
    coalesce(c.email_marketing_consent, false) as email_marketing_consent,
    coalesce(pz.personalization_consent, true) as personalization_consent,
    e.erasure_requested_at is not null as is_erasure_requested,
    g.first_signup_at,
    g.last_profile_update_at,
    g.first_name_source,
    g.last_name_source,
    g.email_source,
    g.phone_e164_source,
    g.birth_date_source,
    g.gender_source,
    g.address_source,
    g.city_source,
    g.postcode_source,
    g.country_code_source,
    g.loyalty_card_source
from golden as g
left join cluster_nodes as n on n.customer_key = g.customer_key
left join consent as c on c.customer_key = g.customer_key
left join personalization as pz on pz.customer_key = g.customer_key
left join erasure as e on e.customer_key = g.customer_key
