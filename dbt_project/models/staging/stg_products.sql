with

source as (
    select * from {{ source('raw', 'products') }}
),

fx as (
    select currency, rate_to_base from {{ ref('fx_rates') }}
),

renamed as (
    select
        -- ids
        {{ tessera.clean_text('s.product_id') }} as product_id,

        -- strings
        {{ tessera.clean_text('s.name') }} as product_name,
        coalesce(lower({{ tessera.clean_text('s.category') }}), 'unknown') as category,
        coalesce({{ tessera.clean_text('s.brand') }}, 'unknown') as brand,
        coalesce(upper(trim(s.currency)), '{{ var("base_currency") }}') as currency,

        -- numerics
        {{ tessera.try_cast('s.price', 'decimal(18, 2)') }} as price,
        cast({{ tessera.try_cast('s.price', 'decimal(18, 2)') }} * fx.rate_to_base as decimal(18, 2)) as price_base,

        -- booleans
        coalesce(lower(trim(s.is_active)) not in ('false', '0', 'no', 'n'), true) as is_active,

        -- timestamps
        {{ tessera.to_utc_timestamp('s.created_at') }} as created_at,

        case
            when {{ tessera.clean_text('s.product_id') }} is null then 'missing product_id'
            when {{ tessera.try_cast('s.price', 'decimal(18, 2)') }} is null then 'unparseable price'
            when {{ tessera.try_cast('s.price', 'decimal(18, 2)') }} < 0 then 'negative price'
            when fx.rate_to_base is null then 'unknown currency'
        end as invalid_reason,

        s._source_file,
        s._source_row
    from source as s
    left join fx on fx.currency = coalesce(upper(trim(s.currency)), '{{ var("base_currency") }}')
)

select * from renamed
