{#- Small cross-database macros. DuckDB and Spark SQL are the two adapters we target; anything
    that differs between engines goes through adapter.dispatch so models stay unchanged. -#}

{% macro regex_matches(expr, pattern) -%}
    {{ return(adapter.dispatch('regex_matches', 'tessera')(expr, pattern)) }}
{%- endmacro %}
{% macro default__regex_matches(expr, pattern) -%}regexp_matches({{ expr }}, '{{ pattern }}'){%- endmacro %}

{#- Spark parses backslash escapes in string literals; DuckDB does not. -#}
{% macro spark__regex_matches(expr, pattern) -%}({{ expr }} rlike '{{ pattern | replace("\\", "\\\\") }}'){%- endmacro %}

{% macro regex_replace_all(expr, pattern, replacement) -%}
    {{ return(adapter.dispatch('regex_replace_all', 'tessera')(expr, pattern, replacement)) }}
{%- endmacro %}
{% macro default__regex_replace_all(expr, pattern, replacement) -%}
    regexp_replace({{ expr }}, '{{ pattern }}', '{{ replacement }}', 'g')
{%- endmacro %}
{% macro spark__regex_replace_all(expr, pattern, replacement) -%}
    regexp_replace({{ expr }}, '{{ pattern | replace("\\", "\\\\") }}', '{{ replacement }}')
{%- endmacro %}

{% macro regex_strip(expr, pattern) -%}{{ tessera.regex_replace_all(expr, pattern, '') }}{%- endmacro %}

{#- Parse an ISO 8601 text timestamp (with or without zone; no zone means UTC) into a UTC
    timestamp without zone. Unparseable text gives NULL. -#}
{% macro to_utc_timestamp(expr) -%}
    {{ return(adapter.dispatch('to_utc_timestamp', 'tessera')(expr)) }}
{%- endmacro %}
{% macro default__to_utc_timestamp(expr) -%}
    cast(timezone('UTC', try_cast({{ expr }} as timestamptz)) as timestamp)
{%- endmacro %}
{% macro spark__to_utc_timestamp(expr) -%}
    cast(to_timestamp({{ expr }}) as timestamp)
{%- endmacro %}

{% macro try_cast(expr, type) -%}
    {{ return(adapter.dispatch('try_cast', 'tessera')(expr, type)) }}
{%- endmacro %}
{% macro default__try_cast(expr, type) -%}try_cast({{ expr }} as {{ type }}){%- endmacro %}
{% macro spark__try_cast(expr, type) -%}try_cast({{ expr }} as {{ type }}){%- endmacro %}

{#- The non-null value of expr with the greatest order_expr within a group. Ties on order_expr go
    to the greatest value, so the result never depends on row order. Rows with a NULL
    order_expr are not considered. -#}
{% macro latest_value(expr, order_expr) -%}
    max_by({{ expr }}, {{ tessera.row_of(order_expr, expr) }}) filter (where {{ expr }} is not null and {{ order_expr }} is not null)
{%- endmacro %}

{% macro row_of(first, second) -%}
    {{ return(adapter.dispatch('row_of', 'tessera')(first, second)) }}
{%- endmacro %}
{% macro default__row_of(first, second) -%}({{ first }}, {{ second }}){%- endmacro %}
{% macro spark__row_of(first, second) -%}struct({{ first }}, {{ second }}){%- endmacro %}

{#- A short, stable surrogate key from a text expression. -#}
{% macro short_key(prefix, expr) -%}
    {{ dbt.concat(["'" ~ prefix ~ "'", dbt.right(dbt.hash(expr), 16)]) }}
{%- endmacro %}

{#- One row of a relation as a JSON object text, every column but the lineage ones, values as
    stored (raw tables hold text exactly as delivered). Used to keep a quarantined row's content. -#}
{% macro row_as_json(relation, alias) -%}
    {%- set columns = [] -%}
    {%- if execute -%}
        {%- for column in adapter.get_columns_in_relation(relation) if column.name not in ('_source_file', '_source_row') -%}
            {%- do columns.append(column.name) -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(adapter.dispatch('row_as_json', 'tessera')(columns, alias)) }}
{%- endmacro %}
{% macro default__row_as_json(columns, alias) -%}
    cast(to_json(struct_pack({% for c in columns %}{{ adapter.quote(c) }} := {{ alias }}.{{ adapter.quote(c) }}{{ ", " if not loop.last }}{% endfor %})) as {{ dbt.type_string() }})
{%- endmacro %}
{#- Spark's to_json leaves out NULL fields unless told; DuckDB's writes them as null. -#}
{% macro spark__row_as_json(columns, alias) -%}
    to_json(named_struct({% for c in columns %}'{{ c }}', {{ alias }}.{{ adapter.quote(c) }}{{ ", " if not loop.last }}{% endfor %}), map('ignoreNullFields', 'false'))
{%- endmacro %}

{#- The values of `measure` joined with `delimiter_text` in the order of `order_expr`.
    dbt.listagg's Spark implementation ignores its order clause (collect_list has no order), so
    the result would depend on the query plan; Spark sorts (order, value) pairs instead. -#}
{% macro ordered_listagg(measure, delimiter_text, order_expr) -%}
    {{ return(adapter.dispatch('ordered_listagg', 'tessera')(measure, delimiter_text, order_expr)) }}
{%- endmacro %}
{% macro default__ordered_listagg(measure, delimiter_text, order_expr) -%}
    {{ dbt.listagg(measure, delimiter_text, 'order by ' ~ order_expr) }}
{%- endmacro %}
{% macro spark__ordered_listagg(measure, delimiter_text, order_expr) -%}
    array_join(transform(array_sort(collect_list(struct({{ order_expr }} as k, {{ measure }} as v))), x -> x.v), {{ delimiter_text }})
{%- endmacro %}
