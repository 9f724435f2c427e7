{#- The quarantine: every landing record that did not go on, one row each, with where it came
    from, why, and what it held.
    - stage 'load': the loader could not parse the record (raw.load_rejects); raw_content is the
      line as delivered, each byte that is not UTF-8 written \xNN (the exact bytes are kept in hex in
      raw.load_rejects.raw_content_hex).
    - stage 'staging': the record parsed but a value is unusable (staging invalid_reason, or an
      order line without a known order or product); raw_content is the raw row as JSON, every
      value as delivered.
    Valid records of the same files went on; reconciliation is in source_reconciliation. -#}
{%- set raw_sources = ['customers', 'products', 'orders', 'order_items', 'pos_transactions', 'events', 'email_events', 'privacy', 'identifiers'] -%}

with rejected as (
    select * from {{ ref('int_rejected_records') }}
),

{% for name in raw_sources %}
staging_{{ name }} as (
    select
        'staging' as stage,
        r.source_table as source,
        r._source_file,
        r._source_row,
        r.record_id,
        r.invalid_reason as reason,
        {{ tessera.row_as_json(source('raw', name), 'w') }} as raw_content
    from rejected as r
    inner join {{ source('raw', name) }} as w
        on w._source_file = r._source_file and w._source_row = r._source_row
    where r.source_table = '{{ name }}'
),

{% endfor %}
at_load as (
    select
        'load' as stage,
        source,
        _source_file,
        _source_row,
        cast(null as {{ dbt.type_string() }}) as record_id,
        reason,
        raw_content
    from {{ source('raw', 'load_rejects') }}
)

select * from at_load
{% for name in raw_sources %}
union all
select * from staging_{{ name }}
{% endfor %}
