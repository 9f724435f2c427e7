-- The serving API's lookup by a shop's own id (docs/publishing.md, "Lookup by the shop's ids"):
-- one row per id of the identity graph a storefront knows, for every published customer.
-- id_type: customer_id (the CRM id), anonymous_id (a cookie whose logins all belong to one person)
-- or a declared identifier's own type (login_id, person_id...: landing source identifiers).
-- id_hash: sha256(salt || ':' || id) in hex, never the id itself (the erasure's suppression list
-- hashes the same way). An id of one type hashing for two customers names neither (dropped).
with nodes as (
    select
        case node_type
            when 'crm' then 'customer_id'
            when 'cookie' then 'anonymous_id'
            else split_part(node_key, ':', 2)
        end as id_type,
        sha256(getvariable('tessera_pseudonym_salt') || ':' || node_value) as id_hash,
        customer_pkey(customer_key) as customer_pkey
    from intermediate.int_identities_resolved
    where node_type in ('crm', 'cookie', 'declared')
)
select n.id_type, n.id_hash, min(n.customer_pkey) as customer_pkey
from nodes as n
inner join {table} as t on t.customer_pkey = n.customer_pkey
group by n.id_type, n.id_hash
having count(distinct n.customer_pkey) = 1
order by n.id_type, n.id_hash
