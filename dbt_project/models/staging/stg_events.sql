{#- The one staging model kept as a table: the clickstream is the largest source, and its
    validity (the duplicate event_id window and the timestamp checks) is read by int_events,
    int_identities_resolved, int_rejected_records and source_reconciliation. As a view, each of
    them computed it again over every event (14 s per reading for 3M events, issue 9); as a table
    it is computed once per run. Every run that loads events rebuilds it (the landing sensor
    selects it, as it is not a view), and the erasure runs after it in every job that has both. -#}
{{ config(materialized='table') }}
{%- set event_types = ['page_view', 'product_view', 'search', 'add_to_cart', 'remove_from_cart', 'checkout', 'purchase'] -%}
with

source as (
    select * from {{ source('raw', 'events') }}
),

countries as (
    select alias, country_code from {{ ref('country_aliases') }}
),

cleaned as (
    select
        -- ids
        {{ tessera.clean_text('s.event_id') }} as event_id,
        {{ tessera.clean_text('s.anonymous_id') }} as anonymous_id,
        {{ tessera.clean_text('s.customer_id') }} as customer_id,
        {{ tessera.clean_text('s.session_id') }} as session_id,
        {{ tessera.clean_text('s.product_id') }} as product_id,

        -- strings
        lower(trim(s.event_type)) as event_type,
        coalesce(lower(trim(s.device)), 'unknown') as device,
        coalesce(lower(trim(s.referrer)), 'unknown') as referrer,
        c.country_code,

        -- timestamps
        {{ tessera.to_utc_timestamp('s.event_ts') }} as event_at,

        s._source_file,
        s._source_row
    from source as s
    left join countries as c on c.alias = {{ tessera.country_alias_key('s.country') }}
),

repeats as (
    {{ tessera.repeated_deliveries(source('raw', 'events'), tessera.clean_text('event_id')) }}
),

renamed as (
    select
        e.event_id,
        e.anonymous_id,
        e.customer_id,
        e.session_id,
        e.product_id,
        e.event_type,
        e.device,
        e.referrer,
        e.country_code,
        e.event_at,

        coalesce(case
            when e.event_id is null then 'missing event_id'
            when e.event_type is null
                or e.event_type not in ('{{ event_types | join("', '") }}') then 'unknown event_type'
            when e.event_at is null then 'unparseable event_ts'
            when e.anonymous_id is null then 'missing anonymous_id'
        end,
            {{ tessera.timestamp_range_reason('e.event_at', 'event_ts') }},
            {{ tessera.duplicate_reason('dup', 'event_id') }}
        ) as invalid_reason,

        e._source_file,
        e._source_row
    from cleaned as e
    left join repeats as dup on dup._source_file = e._source_file and dup._source_row = e._source_row
)

select * from renamed
