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

{% macro delete_superseded_files(source_name) -%}
    delete from {{ this }}
    where not exists (
        select 1 from {{ source('raw', 'load_audit') }} as a
        where a.source = '{{ source_name }}'
            and a._source_file = {{ this }}._source_file
            and a.file_hash = {{ this }}._file_hash
    )
{%- endmacro %}
