{#- Generic test: the share of one source's landing records quarantined in this load stays at or
    below TESSERA_QUARANTINE_MAX_RATE (default 0.05). Quarantined means rejected by the loader
    (raw.load_rejects) or flagged by the tested model (invalid_reason not null). On a model that
    holds several sources, source_column names the column that tells them apart.

    A failure returns one row with the counts. It is an error: `dbt build` skips the tested
    model's children and the Dagster step fails, so nothing downstream of it runs. -#}
{% test quarantine_rate(model, source_name, source_column=none) %}
{%- set max_rate = env_var('TESSERA_QUARANTINE_MAX_RATE', '0.05') | float -%}
with flagged as (
    select
        count(*) as staged_rows,
        coalesce(sum(case when invalid_reason is not null then 1 else 0 end), 0) as flagged_rows
    from {{ model }}
    {%- if source_column %}
    where {{ source_column }} = '{{ source_name }}'
    {%- endif %}
),

rejected_at_load as (
    {#- Named directly, not through source(): a test with a second parent only skips the models
        that descend from both, so through source() a failure would no longer stop the tested
        model's children in `dbt build`. The loader writes this table before any dbt runs. A
        Spark target has no database (two-level names), hence target.get. -#}
    select count(*) as rejected_rows
    from {{ api.Relation.create(database=target.get('database'), schema='raw', identifier='load_rejects') }}
    where source = '{{ source_name }}'
),

rates as (
    select
        '{{ source_name }}' as source,
        f.staged_rows + r.rejected_rows as landing_records,
        f.flagged_rows + r.rejected_rows as quarantined_records,
        {{ max_rate }} as max_rate
    from flagged as f
    cross join rejected_at_load as r
)

select *
from rates
where quarantined_records > max_rate * landing_records
{% endtest %}
