{#- The identity graph's nodes of the given types (node_key, customer_key), for a join on
    node_key. A node key is its type and value ('crm:C1'), so a join on a key of one type can only
    match nodes of that type; filtering first keeps the join's hash table to them. Joined against
    every node (7.5M at 1M customers), fct_customer_product_interactions and
    int_customer_attributes_survived ran out of DuckDB's 4GB memory limit. -#}
{% macro identity_nodes(node_types) -%}
    (select node_key, customer_key from {{ ref('int_identities_resolved') }}
    where node_type in ('{{ node_types | join("', '") }}'))
{%- endmacro %}
