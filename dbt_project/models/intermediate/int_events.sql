{#- Every usable clickstream event, processed once: incremental by landing file (macros/incremental.sql).
    A new day of events reads that day's file and appends it; history is not rebuilt.

    Validity (including "duplicate event_id") comes from stg_events, the one place the rules live,
    so the quarantine and this model always agree. One case only an incremental run meets: a file
    that sorts before one already processed and repeats its events (a late re-delivery). The full
    rule would keep the earlier file's copy; here the copy already processed stays and the
    newcomer is skipped, so an event is still counted once. -#}
-- It reads raw events through the stg_events table; the direct dependency on the raw source
-- keeps the load, stg_events and this model in order in any run that selects them.
-- depends_on: {{ source('raw', 'events') }}
{#- On Spark both settings below are target conditions, and only there: the session target keeps
    tables as plain Parquet, which has no DELETE for the post-hook (appending without it would keep
    the rows of changed files), so Spark rebuilds the model as a table on every run. The rows are the same: a full
    build reads only files in raw.load_audit at their current hash, the rows the hook would keep.
    Incremental runs on Spark need Delta Lake (not set up here). -#}
{{ config(
    materialized='table' if target.type == 'spark' else 'incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    post_hook=[] if target.type == 'spark' else ["{{ tessera.delete_superseded_files('events') }}"],
) }}

with

files as (
    {{ tessera.files_to_process('events') }}
),

events as (
    select e.*, f.file_hash as _file_hash
    from {{ ref('stg_events') }} as e
    inner join files as f on f._source_file = e._source_file
    where e.invalid_reason is null
)

select
    event_id,
    event_type,
    event_at,
    session_id,
    anonymous_id,
    customer_id,
    product_id,
    device,
    referrer,
    country_code,
    _source_file,
    _source_row,
    _file_hash
from events as e
{%- if is_incremental() %}
where not exists (
    select 1 from {{ this }} as t where t.event_id = e.event_id and t._source_file <> e._source_file
)
{%- endif %}
