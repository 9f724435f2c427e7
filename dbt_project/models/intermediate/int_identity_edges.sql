{#- Deterministic identity links. Each row joins a record node to an identifier node:
      crm:<customer_id>  -- email / phone / card     (CRM profile identifiers)
      pos:<receipt_id>   -- email / phone / card     (identifiers shown at the till)
      cookie:<anon id>   -- crm:<customer_id>         (a login on that browser)
    Identifiers shared by too many CRM profiles, and cookies used by more than one login, are not
    used to link: they would chain unrelated people together. -#}
with

customers as (
    select customer_id, email, phone_e164, loyalty_card
    from {{ ref('stg_customers') }}
    where invalid_reason is null
),

crm_identifiers as (
    select 'crm:' || customer_id as record_node, 'email:' || email as identifier_node, 'email' as link_type from customers where email is not null
    union all
    select 'crm:' || customer_id, 'phone:' || phone_e164, 'phone' from customers where phone_e164 is not null
    union all
    select 'crm:' || customer_id, 'card:' || loyalty_card, 'loyalty_card' from customers where loyalty_card is not null
),

overshared as (
    select identifier_node
    from crm_identifiers
    group by identifier_node
    having count(distinct record_node) > {{ var('identity_max_profiles_per_identifier') }}
),

pos as (
    select distinct receipt_id, email, phone_e164, loyalty_card
    from {{ ref('stg_pos_transactions') }}
    where invalid_reason is null
),

pos_identifiers as (
    select 'pos:' || receipt_id as record_node, 'email:' || email as identifier_node, 'email' as link_type from pos where email is not null
    union all
    select 'pos:' || receipt_id, 'phone:' || phone_e164, 'phone' from pos where phone_e164 is not null
    union all
    select 'pos:' || receipt_id, 'card:' || loyalty_card, 'loyalty_card' from pos where loyalty_card is not null
),

logins as (
    select anonymous_id, customer_id
    from {{ ref('stg_events') }}
    where invalid_reason is null and customer_id is not null
    group by anonymous_id, customer_id
),

shared_cookies as (
    select anonymous_id from logins group by anonymous_id having count(*) > 1
),

cookie_links as (
    select 'cookie:' || l.anonymous_id as record_node, 'crm:' || l.customer_id as identifier_node, 'login_cookie' as link_type
    from logins as l
    where l.anonymous_id not in (select anonymous_id from shared_cookies)
),

all_links as (
    select * from crm_identifiers
    union all
    select * from pos_identifiers
    union all
    select * from cookie_links
)

select record_node, identifier_node, link_type
from all_links
where identifier_node not in (select identifier_node from overshared)
group by record_node, identifier_node, link_type
