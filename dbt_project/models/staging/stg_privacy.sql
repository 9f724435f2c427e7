with

source as (
    select * from {{ source('raw', 'privacy') }}
),

repeats as (
    {{ tessera.repeated_deliveries(source('raw', 'privacy'), tessera.clean_text('request_id')) }}
),

renamed as (
    select
        {{ tessera.clean_text('request_id') }} as request_id,
        {{ tessera.clean_text('customer_id') }} as customer_id,
        {{ tessera.normalise_email('email') }} as email,
        lower(trim(request_type)) as request_type,
        coalesce(lower(trim(channel)), 'all') as channel,
        coalesce(lower(trim(purpose)), 'all') as purpose,
        case lower(trim(granted)) when 'true' then true when 'false' then false end as granted,
        {{ tessera.to_utc_timestamp('requested_at') }} as requested_at,

        coalesce(case
            when {{ tessera.clean_text('request_id') }} is null then 'missing request_id'
            when lower(trim(request_type)) is null or lower(trim(request_type)) not in ('consent', 'erasure') then 'unknown request_type'
            when {{ tessera.clean_text('customer_id') }} is null and {{ tessera.normalise_email('email') }} is null then 'no customer_id or email'
            when lower(trim(request_type)) = 'consent' and lower(trim(granted)) not in ('true', 'false') then 'consent without granted true/false'
            when lower(trim(request_type)) = 'consent' and coalesce(lower(trim(channel)), 'all') not in {{ tessera.consent_values('channel') }} then 'unknown consent channel'
            when lower(trim(request_type)) = 'consent' and coalesce(lower(trim(purpose)), 'all') not in {{ tessera.consent_values('purpose') }} then 'unknown consent purpose'
            when {{ tessera.to_utc_timestamp('requested_at') }} is null then 'unparseable requested_at'
        end,
            {{ tessera.timestamp_range_reason(tessera.to_utc_timestamp('requested_at'), 'requested_at') }},
            {{ tessera.duplicate_reason('dup', 'request_id') }}
        ) as invalid_reason,

        s._source_file,
        s._source_row
    from source as s
    left join repeats as dup on dup._source_file = s._source_file and dup._source_row = s._source_row
)

select * from renamed
