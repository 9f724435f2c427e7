{%- set currency = "coalesce(upper(trim(s.currency)), '" ~ var('base_currency') ~ "')" -%}
with

source as (
    select * from {{ source('raw', 'products') }}
),

-- a catalogue price is today's price: it converts with each currency's latest rate
fx as (
    select currency, rate_to_base from {{ ref('stg_fx_rates') }} where valid_to is null
),

iso_currencies as (
    select code from {{ ref('currencies') }}
),

renamed as (
    select
        -- ids
        {{ tessera.clean_text('s.product_id') }} as product_id,

        -- strings
        {{ tessera.clean_text('s.name') }} as product_name,
        coalesce(lower({{ tessera.clean_text('s.category') }}), 'unknown') as category,
        coalesce({{ tessera.clean_text('s.brand') }}, 'unknown') as brand,
        -- what the line sells: only 'merchandise' is a customer product (docs/landing_contract.md)
        coalesce(lower({{ tessera.clean_text('s.product_type') }}), 'merchandise') as product_type,
        coalesce(upper(trim(s.currency)), '{{ var("base_currency") }}') as currency,

        -- numerics
        {{ tessera.try_cast('s.price', 'decimal(18, 2)') }} as price,
        cast({{ tessera.try_cast('s.price', 'decimal(18, 2)') }} * fx.rate_to_base as decimal(18, 2)) as price_base,

        -- booleans
        coalesce(lower(trim(s.is_active)) not in ('false', '0', 'no', 'n'), true) as is_active,

        -- timestamps
        {{ tessera.to_utc_timestamp('s.created_at') }} as created_at,

        coalesce(case
            when {{ tessera.clean_text('s.product_id') }} is null then 'missing product_id'
            -- a catalogue without prices (a clickstream's item ids) is a catalogue: only a price
            -- that is there and does not read is a bad value
            when {{ tessera.clean_text('s.price') }} is not null
                and {{ tessera.try_cast('s.price', 'decimal(18, 2)') }} is null then 'unparseable price'
            when {{ tessera.try_cast('s.price', 'decimal(18, 2)') }} < 0 then 'negative price'
            when coalesce(lower({{ tessera.clean_text('s.product_type') }}), 'merchandise')
                not in ({{ tessera.product_types() }}) then 'unknown product_type'
        end,
            {{ tessera.currency_reason('s.currency', currency, 'iso', 'fx.rate_to_base', none, 's._source_file') }}
        ) as invalid_reason,

        s._source_file,
        s._source_row
    from source as s
    left join iso_currencies as iso on iso.code = {{ currency }}
    left join fx on fx.currency = {{ currency }}
)

select * from renamed
