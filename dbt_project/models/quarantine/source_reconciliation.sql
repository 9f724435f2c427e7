{#- Every source, every run: nothing a shop sent is lost.
    landing_records   records in the landing files, counted by the loader without DuckDB
    raw_rows          records loaded into raw.<source>
    quarantined_at_load, quarantined_in_staging   rows of quarantined_records by stage
    valid_rows        rows the staging layer passes on (invalid_reason NULL; order lines as in
                      int_order_lines, which also rejects orphan lines and unknown products;
                      identifiers as in int_person_identifiers, which also sets aside those of
                      unknown profiles)
    erased_rows, erased_rejects   raw rows and rejected lines removed by an erasure request
                      (raw.erased_rows, tessera/privacy/erasure.py)
    files_not_loaded  files in the source's folder the loader did not load (unsupported type, JSON
                      array, spreadsheet, broken link, unreadable): each is a raw.load_audit row
                      with its not_loaded_reason; TESSERA_LANDING_UNLOADED_FILES decides whether
                      the load blocks on them (default) or goes on
    reconciles        landing = raw + quarantined at load + erased, and raw = valid + quarantined in staging
    A singular test fails the build when a source does not reconcile. -#}
{%- set staged = [
    ('customers', ref('stg_customers'), none),
    ('products', ref('stg_products'), none),
    ('orders', ref('stg_orders'), none),
    ('order_items', ref('int_order_lines'), 'order_items'),
    ('pos_transactions', ref('int_order_lines'), 'pos_transactions'),
    ('events', ref('stg_events'), none),
    ('email_events', ref('stg_email_events'), none),
    ('privacy', ref('stg_privacy'), none),
    ('identifiers', ref('int_person_identifiers'), none),
] -%}

with audit as (
    select
        source,
        cast(sum(landing_records) as bigint) as landing_records,
        cast(sum(loaded_rows) as bigint) as loaded_rows,
        cast(sum(quarantined_rows) as bigint) as rejected_by_loader,
        cast(count(not_loaded_reason) as bigint) as files_not_loaded
    from {{ source('raw', 'load_audit') }}
    group by source
),

counts as (
    {%- for name, relation, source_table in staged %}
    select
        '{{ name }}' as source,
        (select count(*) from {{ source('raw', name) }}) as raw_rows,
        count(*) as staged_rows,
        cast(coalesce(sum(case when invalid_reason is null then 1 else 0 end), 0) as bigint) as valid_rows
    from {{ relation }}
    {%- if source_table %}
    where source_table = '{{ source_table }}'
    {%- endif %}
    {{ "union all" if not loop.last }}
    {%- endfor %}
),

quarantined as (
    select
        source,
        cast(sum(case when stage = 'load' then 1 else 0 end) as bigint) as quarantined_at_load,
        cast(sum(case when stage = 'staging' then 1 else 0 end) as bigint) as quarantined_in_staging
    from {{ ref('quarantined_records') }}
    group by source
),

erased as (
    select
        source,
        cast(sum(case when stage = 'raw' then 1 else 0 end) as bigint) as erased_rows,
        cast(sum(case when stage = 'load_reject' then 1 else 0 end) as bigint) as erased_rejects
    from {{ source('raw', 'erased_rows') }}
    group by source
),

joined as (
    select
        c.source,
        coalesce(a.landing_records, 0) as landing_records,
        c.raw_rows,
        coalesce(q.quarantined_at_load, 0) as quarantined_at_load,
        c.valid_rows,
        coalesce(q.quarantined_in_staging, 0) as quarantined_in_staging,
        coalesce(a.rejected_by_loader, 0) as rejected_by_loader,
        coalesce(e.erased_rows, 0) as erased_rows,
        coalesce(e.erased_rejects, 0) as erased_rejects,
        coalesce(a.files_not_loaded, 0) as files_not_loaded
    from counts as c
    left join audit as a on a.source = c.source
    left join quarantined as q on q.source = c.source
    left join erased as e on e.source = c.source
)

select
    source,
    landing_records,
    raw_rows,
    quarantined_at_load,
    valid_rows,
    quarantined_in_staging,
    quarantined_at_load + quarantined_in_staging as quarantined_records,
    case
        when landing_records = 0 then 0.0
        else cast(quarantined_at_load + quarantined_in_staging as double) / landing_records
    end as quarantine_rate,
    erased_rows,
    erased_rejects,
    files_not_loaded,
    landing_records = raw_rows + quarantined_at_load + erased_rows + erased_rejects
        and quarantined_at_load + erased_rejects = rejected_by_loader
        and raw_rows = valid_rows + quarantined_in_staging as reconciles
from joined
