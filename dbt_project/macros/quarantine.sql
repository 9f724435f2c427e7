{#- Row-level reasons shared by the staging models. A reason puts the row in the quarantine
    (quarantine.quarantined_records); NULL lets it go on. -#}

{#- A record whose key an earlier record of the same source already carried (earlier file, or
    earlier row of the same file): a file delivered twice, or rows repeated inside a file. The
    first delivery goes on; the others are quarantined naming it.

    Two macros, because a reason needs a join: `repeated_deliveries(relation, key_expr)` is the
    body of a CTE over `relation`, the raw table (_source_file and _source_row, one row per pair,
    as the loader writes them). It holds one row per delivery of a key that occurs more than once,
    with its delivery number and the first delivery's file and row. The staging model left-joins
    it on (_source_file, _source_row), and `duplicate_reason(alias, key_name)` words the reason
    from the joined alias. Pass the raw relation itself, not a CTE the model also reads: DuckDB
    materialises a CTE read more than once, every column of every row (counting the rows of
    stg_email_events took 13.5 s that way at 1M customers, 4.8 s reading the table twice).

    Only repeated keys are ranked: a window over every row sorted the whole source (35 of the 47 s
    of stg_events at 1M customers, issue 9), where a grouping finds the few repeated keys and the
    window sorts only their rows. -#}
{% macro repeated_deliveries(relation, key_expr) -%}
    {%- set window = 'over (partition by k.dup_key order by k._source_file, k._source_row)' -%}
    select
        k._source_file,
        k._source_row,
        row_number() {{ window }} as delivery,
        first_value(k._source_file) {{ window }} as first_file,
        first_value(k._source_row) {{ window }} as first_row
    from (
        select {{ key_expr }} as dup_key, _source_file, _source_row from {{ relation }}
    ) as k
    inner join (
        select {{ key_expr }} as dup_key
        from {{ relation }}
        where {{ key_expr }} is not null
        group by {{ key_expr }}
        having count(*) > 1
    ) as r on r.dup_key = k.dup_key
{%- endmacro %}

{% macro duplicate_reason(alias, key_name) -%}
    case when {{ alias }}.delivery > 1 then {{ dbt.concat([
        "'duplicate " ~ key_name ~ " (first delivered in '",
        alias ~ ".first_file",
        "' row '",
        "cast(" ~ alias ~ ".first_row as " ~ dbt.type_string() ~ ")",
        "')'",
    ]) }} end
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

{#- The product types of the landing contract (tessera/landing/contract.py PRODUCT_TYPES), as a SQL list.
    Only 'merchandise' is a customer product: the others (postage, fees, vouchers, adjustments,
    test items, services) are order lines that are not customer sales. -#}
{% macro product_types() -%}
    'merchandise', 'shipping', 'fee', 'voucher', 'adjustment', 'test', 'service'
{%- endmacro %}
