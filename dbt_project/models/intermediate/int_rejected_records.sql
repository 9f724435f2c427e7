{#- Every landing row that cannot be used downstream, with its reason and lineage. Nothing is
    dropped silently: a row is either in a mart or here. -#}
{%- set staged = [
    ('customers', 'stg_customers', 'customer_id'),
    ('products', 'stg_products', 'product_id'),
    ('orders', 'stg_orders', 'order_id'),
    ('events', 'stg_events', 'event_id'),
    ('email_events', 'stg_email_events', 'email_event_id'),
    ('privacy', 'stg_privacy', 'request_id'),
    ('identifiers', 'int_person_identifiers', 'customer_id'),
] -%}
{%- for source_name, model, key in staged %}
select
    '{{ source_name }}' as source_table,
    cast({{ key }} as {{ dbt.type_string() }}) as record_id,
    invalid_reason,
    _source_file,
    _source_row
from {{ ref(model) }}
where invalid_reason is not null
union all
{% endfor %}
select
    source_table,
    order_item_id as record_id,
    invalid_reason,
    _source_file,
    _source_row
from {{ ref('int_order_lines') }}
where invalid_reason is not null
