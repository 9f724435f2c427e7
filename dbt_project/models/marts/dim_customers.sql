{#- The unified customer view: one row per resolved person, i.e. per customer of the identity map:
    one with at least one CRM profile, or one known only by the customer id on their orders or
    logins (crm_profile_count 0, no attributes: docs/landing_contract.md, "Partial shops").
    Golden record: each attribute follows the survivorship rule in int_customer_attributes_survived
    (docs/identity.md), and <attribute>_source names the record that gave the value. -#}
with

profiles as (
    select
        r.customer_key,
        c.*
    from {{ ref('stg_customers') }} as c
    inner join {{ tessera.identity_nodes(['crm']) }} as r on r.node_key = 'crm:' || c.customer_id
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

-- consent per channel and purpose as columns consent_<channel>_<purpose> (customer_consents)
consents as (
    select
        customer_key,
        {%- for c in var('consent_purposes') %}
        max(case when channel = '{{ c.channel }}' and purpose = '{{ c.purpose }}' and granted then 1 else 0 end) = 1
            as consent_{{ c.channel }}_{{ c.purpose }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ ref('customer_consents') }}
    group by customer_key
),

erasure as (
    select customer_key, max(requested_at) as erasure_requested_at
    from {{ ref('int_privacy_requests_resolved') }}
    where request_type = 'erasure' and customer_key is not null
    group by customer_key
),

-- every customer id of the identity map (int_person_records), with its profile when it has one
profile_counts as (
    select
        n.customer_key,
        coalesce(min(p.customer_id), min(n.node_value)) as anchor_customer_id,
        count(distinct p.customer_id) as crm_profile_count,
        min(p.signup_at) as first_signup_at,
        max(p.updated_at) as last_profile_update_at
    from {{ ref('int_identities_resolved') }} as n
    left join profiles as p on p.customer_key = n.customer_key and p.customer_id = n.node_value
    where n.node_type = 'crm'
    group by n.customer_key
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
    -- the two every output uses; every pair of var('consent_purposes') follows as its own column
    coalesce(k.consent_email_marketing, false) as email_marketing_consent,
    coalesce(k.consent_web_personalization, true) as personalization_consent,
    {%- for c in var('consent_purposes') %}
    k.consent_{{ c.channel }}_{{ c.purpose }},
    {%- endfor %}
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
left join consents as k on k.customer_key = g.customer_key
left join erasure as e on e.customer_key = g.customer_key
