with

source as (
    select * from {{ source('raw', 'order_items') }}
),

repeats as (
    {{ tessera.repeated_deliveries(source('raw', 'order_items'), tessera.clean_text('order_item_id')) }}
),

renamed as (
    select
        -- ids
        {{ tessera.clean_text('order_item_id') }} as order_item_id,
        {{ tessera.clean_text('order_id') }} as order_id,
        {{ tessera.clean_text('product_id') }} as product_id,

        -- numerics
        {{ tessera.try_cast('quantity', 'integer') }} as quantity,
        {{ tessera.try_cast('unit_price', 'decimal(18, 2)') }} as unit_price,

        coalesce(case
            when {{ tessera.clean_text('order_item_id') }} is null then 'missing order_item_id'
            when {{ tessera.clean_text('order_id') }} is null then 'missing order_id'
            when {{ tessera.clean_text('product_id') }} is null then 'missing product_id'
            when {{ tessera.try_cast('quantity', 'integer') }} is null then 'unparseable quantity'
            -- a negative quantity is a returned line (int_order_lines_current: line_type 'return')
            when {{ tessera.try_cast('quantity', 'integer') }} = 0 then 'zero quantity'
            when {{ tessera.try_cast('unit_price', 'decimal(18, 2)') }} is null then 'unparseable unit_price'
            -- a negative unit price is judged in int_order_lines_current, where the product's type is
            -- known: an adjustment may carry one, a customer product may not
        end,
            {{ tessera.duplicate_reason('dup', 'order_item_id') }}
        ) as invalid_reason,

        s._source_file,
        s._source_row
    from source as s
    left join repeats as dup on dup._source_file = s._source_file and dup._source_row = s._source_row
)

select * from renamed
