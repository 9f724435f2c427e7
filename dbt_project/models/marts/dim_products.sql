{#- One row per product in the catalogue. When a product id is delivered more than once, the most
    recently created row wins; rows without created_at rank below those with one, in delivery order
    (so a product delivered without created_at still has its name). price_band splits
    base-currency prices into quartiles (unknown without a price). product_type says what the row sells (only merchandise
    is a customer product); is_active is true only for merchandise still sold. -#}
with

products as (
    select
        *,
        row_number() over (
            partition by product_id order by created_at nulls first, _source_file, _source_row
        ) as version_rank
    from {{ ref('stg_products') }}
    where invalid_reason is null
),

deduplicated as (
    select
        product_id,
        {{ tessera.latest_value('product_name', 'version_rank') }} as product_name,
        {{ tessera.latest_value('category', 'version_rank') }} as category,
        {{ tessera.latest_value('brand', 'version_rank') }} as brand,
        {{ tessera.latest_value('price_base', 'version_rank') }} as price_base,
        {{ tessera.latest_value('is_active', 'version_rank') }} as is_delivered_active,
        {{ tessera.latest_value('product_type', 'version_rank') }} as product_type,
        min(created_at) as created_at
    from products
    group by product_id
),

banded as (
    select
        *,
        cume_dist() over (order by price_base) as price_rank
    from deduplicated
)

select
    product_id,
    product_name,
    category,
    brand,
    price_base,
    case
        when price_base is null then 'unknown'
        when price_rank <= 0.25 then 'budget'
        when price_rank <= 0.5 then 'mid'
        when price_rank <= 0.75 then 'upper'
        else 'premium'
    end as price_band,
    product_type,
    -- recommendable: still sold, and a customer product. Postage, fees, vouchers, adjustments and
    -- test items are never active, so no output publishes them as products.
    is_delivered_active and product_type = 'merchandise' as is_active,
    created_at
from banded
