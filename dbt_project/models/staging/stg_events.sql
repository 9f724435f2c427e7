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

renamed as (
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

        coalesce(case
            when {{ tessera.clean_text('s.event_id') }} is null then 'missing event_id'
            when lower(trim(s.event_type)) is null
                or lower(trim(s.event_type)) not in ('{{ event_types | join("', '") }}') then 'unknown event_type'
            when {{ tessera.to_utc_timestamp('s.event_ts') }} is null then 'unparseable event_ts'
            when {{ tessera.clean_text('s.anonymous_id') }} is null then 'missing anonymous_id'
        end,
            {{ tessera.timestamp_range_reason(tessera.to_utc_timestamp('s.event_ts'), 'event_ts') }},
            {{ tessera.duplicate_reason(tessera.clean_text('s.event_id'), 'event_id', 's') }}
        ) as invalid_reason,

        s._source_file,
        s._source_row
    from source as s
    left join countries as c on c.alias = {{ tessera.country_alias_key('s.country') }}
)

select * from renamed
