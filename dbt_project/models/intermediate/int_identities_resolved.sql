{#- Every node of the identity graph with the stable customer_key it belongs to:
      crm:<customer_id>       from the persisted identity map (deterministic + fuzzy matching)
      email: / phone: / card: an identifier of CRM profiles that all belong to one customer
      declared:<id_type>:<id_value>   a declared identifier (landing source identifiers) of CRM
                              profiles that all belong to one customer (node_value: the id_value)
      pos:<receipt_id>        a store receipt whose card, email or phone names exactly one customer
      cookie:<anonymous_id>   a browser whose logins all belong to one customer: its anonymous
                              events before the login attach to that person
    Identifiers, receipts and cookies that point to two customers attach to neither. -#}
with

identity_map as (
    select record_id as customer_id, customer_id as customer_key
    from {{ source('identity', 'identity_map') }}
),

profiles as (
    select c.customer_id, c.email, c.phone_e164, c.loyalty_card, m.customer_key
    from {{ ref('stg_customers') }} as c
    inner join identity_map as m on m.customer_id = c.customer_id
    where c.invalid_reason is null
),

profile_identifiers as (
    select 'email' as node_type, email as node_value, customer_key from profiles where email is not null
    union all
    select 'phone', phone_e164, customer_key from profiles where phone_e164 is not null
    union all
    select 'card', loyalty_card, customer_key from profiles where loyalty_card is not null
),

identifier_nodes as (
    select node_type, node_value, min(customer_key) as customer_key
    from profile_identifiers
    group by node_type, node_value
    having count(distinct customer_key) = 1
),

declared_nodes as (
    select d.id_type, d.id_value, min(m.customer_key) as customer_key
    from {{ ref('int_person_identifiers') }} as d
    inner join identity_map as m on m.customer_id = d.customer_id
    where d.invalid_reason is null
    group by d.id_type, d.id_value
    having count(distinct m.customer_key) = 1
),

receipt_identifiers as (
    select distinct receipt_id, 'email' as node_type, email as node_value from {{ ref('stg_pos_transactions') }} where invalid_reason is null and email is not null
    union
    select distinct receipt_id, 'phone', phone_e164 from {{ ref('stg_pos_transactions') }} where invalid_reason is null and phone_e164 is not null
    union
    select distinct receipt_id, 'card', loyalty_card from {{ ref('stg_pos_transactions') }} where invalid_reason is null and loyalty_card is not null
),

receipt_nodes as (
    select r.receipt_id, min(i.customer_key) as customer_key
    from receipt_identifiers as r
    inner join identifier_nodes as i on i.node_type = r.node_type and i.node_value = r.node_value
    group by r.receipt_id
    having count(distinct i.customer_key) = 1
),

logins as (
    select distinct e.anonymous_id, m.customer_key
    from {{ ref('stg_events') }} as e
    inner join identity_map as m on m.customer_id = e.customer_id
    where e.invalid_reason is null
),

cookie_nodes as (
    select anonymous_id, min(customer_key) as customer_key
    from logins
    group by anonymous_id
    having count(distinct customer_key) = 1
)

select 'crm:' || customer_id as node_key, 'crm' as node_type, customer_id as node_value, customer_key from identity_map
union all
select node_type || ':' || node_value, node_type, node_value, customer_key from identifier_nodes
union all
select 'declared:' || id_type || ':' || id_value, 'declared', id_value, customer_key from declared_nodes
union all
select 'pos:' || receipt_id, 'pos', receipt_id, customer_key from receipt_nodes
union all
select 'cookie:' || anonymous_id, 'cookie', anonymous_id, customer_key from cookie_nodes
