{#- Connected components of the identity graph by min-label propagation: every node repeatedly
    takes the smallest label among itself and its neighbours. The number of rounds is a var; the
    test assert_identity_labels_converged fails if a link still joins two different labels.
    One row per node, with the customer_key of its cluster. The key is derived from the smallest
    CRM customer_id in the cluster (its anchor), so unchanged input keeps every key. -#}
{%- set rounds = var('identity_max_iterations') | int -%}
with

links as (
    select record_node as node_a, identifier_node as node_b from {{ ref('int_identity_edges') }}
),

crm_nodes as (
    select distinct 'crm:' || customer_id as node
    from {{ ref('stg_customers') }}
    where invalid_reason is null
),

nodes as (
    select node_a as node from links
    union
    select node_b from links
    union
    select node from crm_nodes
),

neighbours as (
    select node_a as node, node_b as neighbour from links
    union all
    select node_b, node_a from links
    union all
    select node, node from nodes
),

labels_0 as (
    select node, node as label from nodes
),
{% for i in range(1, rounds + 1) %}
labels_{{ i }} as (
    select n.node, min(l.label) as label
    from neighbours as n
    inner join labels_{{ i - 1 }} as l on l.node = n.neighbour
    group by n.node
),
{% endfor %}

clusters as (
    select
        node,
        label,
        min(case when node like 'crm:%' then substr(node, 5) end) over (partition by label) as anchor_customer_id
    from labels_{{ rounds }}
)

select
    node as node_key,
    substr(node, 1, {{ dbt.position("':'", "node") }} - 1) as node_type,
    substr(node, {{ dbt.position("':'", "node") }} + 1) as node_value,
    label as cluster_label,
    anchor_customer_id,
    {{ tessera.short_key('tc_', 'coalesce(anchor_customer_id, label)') }} as customer_key
from clusters
