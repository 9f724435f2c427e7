-- Every link must join two nodes of the same cluster. A row here means min-label propagation
-- needed more rounds than var('identity_max_iterations'): raise it.
select e.record_node, e.identifier_node
from {{ ref('int_identity_edges') }} as e
inner join {{ ref('int_identities_resolved') }} as a on a.node_key = e.record_node
inner join {{ ref('int_identities_resolved') }} as b on b.node_key = e.identifier_node
where a.customer_key <> b.customer_key
