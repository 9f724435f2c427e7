{#- Row-level reasons shared by the staging models. A reason puts the row in the quarantine
    (quarantine.quarantined_records); NULL lets it go on. -#}

{#- A record whose key an earlier record of the same source already carried (earlier file, or
    earlier row of the same file): a file delivered twice, or rows repeated inside a file. The
    first delivery goes on; the others are quarantined naming it. -#}
{% macro duplicate_reason(key_expr, key_name, lineage_alias='') -%}
    {%- set p = lineage_alias ~ '.' if lineage_alias else '' -%}
    {%- set window = 'over (partition by ' ~ key_expr ~ ' order by ' ~ p ~ '_source_file, ' ~ p ~ '_source_row)' -%}
    case
        when {{ key_expr }} is not null and row_number() {{ window }} > 1 then {{ dbt.concat([
            "'duplicate " ~ key_name ~ " (first delivered in '",
            "first_value(" ~ p ~ "_source_file) " ~ window,
            "' row '",
            "cast(first_value(" ~ p ~ "_source_row) " ~ window ~ " as " ~ dbt.type_string() ~ ")",
            "')'",
        ]) }}
    end
{%- endmacro %}

{#- Reasons for a business timestamp outside the shop's life: later than now (one day of clock
    skew allowed) or before TESSERA_SHOP_FIRST_DAY (default 2000-01-01). `ts` is already UTC. -#}
{% macro timestamp_range_reason(ts, column_name) -%}
    case
        when {{ ts }} > {{ dbt.dateadd('day', 1, 'cast(' ~ dbt.current_timestamp() ~ ' as timestamp)') }}
            then '{{ column_name }} in the future'
        when {{ ts }} < cast('{{ env_var("TESSERA_SHOP_FIRST_DAY", "2000-01-01") }}' as timestamp)
            then '{{ column_name }} before the shop''s first day'
    end
{%- endmacro %}
