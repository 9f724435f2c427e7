{%- set currency = "coalesce(upper(trim(s.currency)), '" ~ var('base_currency') ~ "')" -%}
{%- set ordered_at = tessera.to_utc_timestamp('s.ordered_at') -%}
with

source as (
    select * from {{ source('raw', 'orders') }}
),

fx as (
    select currency, valid_from, valid_to, rate_to_base from {{ ref('stg_fx_rates') }}
),

iso_currencies as (
    select code from {{ ref('currencies') }}
),

repeats as (
    {{ tessera.repeated_deliveries(source('raw', 'orders'), tessera.clean_text('order_id')) }}
),

renamed as (
    select
        -- ids
        {{ tessera.clean_text('s.order_id') }} as order_id,
        {{ tessera.clean_text('s.customer_id') }} as customer_id,

        -- strings
        coalesce(lower(trim(s.channel)), 'web') as channel,
        coalesce(lower(trim(s.status)), 'completed') as status,
        coalesce(upper(trim(s.currency)), '{{ var("base_currency") }}') as currency,
        fx.rate_to_base,

        -- timestamps
        {{ tessera.to_utc_timestamp('s.ordered_at') }} as ordered_at,

        coalesce(case
            when {{ tessera.clean_text('s.order_id') }} is null then 'missing order_id'
            when {{ tessera.clean_text('s.customer_id') }} is null then 'missing customer_id'
            when {{ tessera.to_utc_timestamp('s.ordered_at') }} is null then 'unparseable ordered_at'
            when coalesce(lower(trim(s.channel)), 'web') not in ('web', 'app') then 'unknown channel'
        end,
            {{ tessera.timestamp_range_reason(tessera.to_utc_timestamp('s.ordered_at'), 'ordered_at') }},
            {{ tessera.duplicate_reason('dup', 'order_id') }},
            -- last: an order quarantined for another reason does not stop the build for its rate
            {{ tessera.currency_reason(
                's.currency', currency, 'iso', 'fx.rate_to_base', 'cast(' ~ ordered_at ~ ' as date)', 's._source_file'
            ) }}
        ) as invalid_reason,

        s._source_file,
        s._source_row
    from source as s
    left join iso_currencies as iso on iso.code = {{ currency }}
    -- the rate that holds on the order's (UTC) day
    left join fx on fx.currency = {{ currency }}
        and {{ tessera.fx_rate_holds('fx', 'cast(' ~ ordered_at ~ ' as date)') }}
    left join repeats as dup on dup._source_file = s._source_file and dup._source_row = s._source_row
)

select * from renamed
