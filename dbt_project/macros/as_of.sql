{#- The "as of" date of features and RFM: var('as_of_date') when set, else the day after the latest
    completed order, so a rebuild on the same input is the same on any calendar day. Returns a
    scalar subquery. -#}
{% macro as_of_date() -%}
    {%- if var('as_of_date') -%}
    cast('{{ var("as_of_date") }}' as date)
    {%- else -%}
    (select cast({{ dbt.dateadd('day', 1, 'max(ordered_at)') }} as date) from {{ ref('fct_orders') }} where status = 'completed')
    {%- endif -%}
{%- endmacro %}
