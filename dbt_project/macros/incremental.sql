{#- Incremental by landing file.

    raw.load_audit holds one row per landing file currently loaded, with the hash of its content.
    An incremental model keeps, on each row, the file it came from and that file's hash. A run then
    reads only the files whose (name, hash) it does not hold yet: new files and changed ones. After
    the insert, `delete_superseded_files` drops the rows of files that were changed (their old hash)
    or removed from the landing folder. History already processed is neither re-read from the
    model nor rewritten. `dbt build --full-refresh` (tessera run --full-refresh) rebuilds it all.

    Plain SQL with `not exists`, so the pattern runs unchanged on Spark, Trino or Snowflake
    (their dbt adapters support the `append` strategy the models use). -#}

{% macro files_to_process(source_name) -%}
    select a._source_file, a.file_hash
    from {{ source('raw', 'load_audit') }} as a
    where a.source = '{{ source_name }}'
    {%- if is_incremental() %}
        and not exists (
            select 1 from {{ this }} as t
            where t._source_file = a._source_file and t._file_hash = a.file_hash
        )
    {%- endif %}
{%- endmacro %}

{#- The rows' source: `source_name` for a model of one source, or `source_column`, a column of
    the model that names each row's source. -#}
{% macro delete_superseded_files(source_name=none, source_column=none) -%}
    delete from {{ this }}
    where not exists (
        select 1 from {{ source('raw', 'load_audit') }} as a
        where a.source = {{ this ~ '.' ~ source_column if source_column else "'" ~ source_name ~ "'" }}
            and a._source_file = {{ this }}._source_file
            and a.file_hash = {{ this }}._file_hash
    )
{%- endmacro %}

{#- The identity-graph node an order line belongs to: the CRM customer of a web or app order, the
    receipt of a store sale (int_identities_resolved links receipts to customers). -#}
{% macro order_line_node_key(alias) -%}
    case
        when {{ alias }}.source_table = 'pos_transactions' then {{ dbt.concat(["'pos:'", alias ~ ".order_id"]) }}
        else {{ dbt.concat(["'crm:'", alias ~ ".source_customer_id"]) }}
    end
{%- endmacro %}

{#- One value for the catalogue as loaded: its files and their content hashes. An order line's
    validity depends on the catalogue, so a change here re-derives every line. -#}
{% macro catalogue_hash() -%}
    select {{ dbt.hash(tessera.ordered_listagg(dbt.concat(['_source_file', "':'", 'file_hash']), "','", '_source_file')) }} as catalogue_hash
    from {{ source('raw', 'load_audit') }}
    where source = 'products'
{%- endmacro %}
