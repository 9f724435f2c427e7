{#- A table, like stg_events: the second largest source (19.6M rows at 1M customers). Its
    validity (duplicate email_event_id, timestamps, event types) is read by int_rejected_records,
    source_reconciliation, customer_feature_snapshots, the quarantine-rate test and the erasure's
    raw pass; as a view each of them computed it again (12.6 s per full reading at 1M customers,
    issue 9). Every run that loads email events rebuilds it (the landing sensor selects it). -#}
{{ config(materialized='table') }}
with

source as (
    select * from {{ source('raw', 'email_events') }}
),

repeats as (
    {{ tessera.repeated_deliveries(source('raw', 'email_events'), tessera.clean_text('email_event_id')) }}
),

renamed as (
    select
        {{ tessera.clean_text('email_event_id') }} as email_event_id,
        {{ tessera.clean_text('campaign_id') }} as campaign_id,
        {{ tessera.normalise_email('email') }} as email,
        lower(trim(event_type)) as event_type,
        {{ tessera.to_utc_timestamp('event_ts') }} as event_at,

        coalesce(case
            when {{ tessera.clean_text('email_event_id') }} is null then 'missing email_event_id'
            when {{ tessera.normalise_email('email') }} is null then 'invalid email'
            when lower(trim(event_type)) is null
                or lower(trim(event_type)) not in ('sent', 'open', 'click', 'bounce', 'unsubscribe') then 'unknown event_type'
            when {{ tessera.to_utc_timestamp('event_ts') }} is null then 'unparseable event_ts'
        end,
            {{ tessera.timestamp_range_reason(tessera.to_utc_timestamp('event_ts'), 'event_ts') }},
            {{ tessera.duplicate_reason('dup', 'email_event_id') }}
        ) as invalid_reason,

        s._source_file,
        s._source_row
    from source as s
    left join repeats as dup on dup._source_file = s._source_file and dup._source_row = s._source_row
)

select * from renamed
