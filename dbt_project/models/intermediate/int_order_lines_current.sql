{#- Every web, app and store order line as the landing files define it now, each with the reason
    it cannot be used (NULL when it can): a line of a rejected order, or of a product the
    catalogue does not know, or a customer product at a negative unit price (a line that is not a
    customer sale, such as a bad-debt adjustment, may carry one). Quantities are signed (negative: returned units), and line_type says
    what a usable line is: sale, return, stock_adjustment or non_sale. A view: int_order_lines stores it, processing only the
    orders whose inputs changed. The provenance columns say what each line was derived from:
    its own file (_source_file, _file_hash), its order's header (_header_file, _header_hash) and
    the catalogue (_catalogue_hash). -#}
-- It reads the raw order sources and the catalogue through staging views. The direct dependencies
-- keep a run that selects it without those views (views need no rebuild) after the loads.
-- depends_on: {{ source('raw', 'orders') }}, {{ source('raw', 'order_items') }}
-- depends_on: {{ source('raw', 'pos_transactions') }}, {{ source('raw', 'products') }}
{{ config(materialized='view') }}

with

orders as (
    -- the first delivery of each order: a repeated order row is quarantined, not joined again
    select * from {{ ref('stg_orders') }}
    where coalesce(invalid_reason, '') not like 'duplicate %'
),

items as (
    select * from {{ ref('stg_order_items') }}
),

-- a product delivered several times with different types takes the first in type order, so a
-- line is never counted as a sale and as something else
products as (
    select product_id, min(product_type) as product_type
    from {{ ref('stg_products') }}
    where invalid_reason is null
    group by product_id
),

files as (
    select source, _source_file, file_hash from {{ source('raw', 'load_audit') }}
),

catalogue as (
    {{ tessera.catalogue_hash() }}
),

web_lines as (
    select
        i.order_item_id,
        i.order_id,
        o.channel,
        o.customer_id as source_customer_id,
        i.product_id,
        i.quantity,
        i.unit_price,
        o.currency,
        cast(i.unit_price * o.rate_to_base as decimal(18, 2)) as unit_price_base,
        o.status,
        p.product_type,
        o.ordered_at,
        coalesce(
            i.invalid_reason,
            case
                when o.order_id is null then 'order not found'
                when o.invalid_reason is not null then 'order rejected: ' || o.invalid_reason
                when p.product_id is null then 'unknown product'
                when i.unit_price < 0 and p.product_type = 'merchandise' then 'negative unit_price'
            end
        ) as invalid_reason,
        'order_items' as source_table,
        i._source_file,
        i._source_row,
        f.file_hash as _file_hash,
        o._source_file as _header_file,
        h.file_hash as _header_hash
    from items as i
    left join orders as o on o.order_id = i.order_id
    left join products as p on p.product_id = i.product_id
    left join files as f on f.source = 'order_items' and f._source_file = i._source_file
    left join files as h on h.source = 'orders' and h._source_file = o._source_file
),

pos_lines as (
    select
        t.transaction_line_id as order_item_id,
        t.receipt_id as order_id,
        'pos' as channel,
        cast(null as {{ dbt.type_string() }}) as source_customer_id,
        t.product_id,
        t.quantity,
        t.unit_price,
        t.currency,
        cast(t.unit_price * t.rate_to_base as decimal(18, 2)) as unit_price_base,
        -- a receipt of returned lines only becomes a 'returned' order in fct_orders
        'completed' as status,
        p.product_type,
        t.transacted_at as ordered_at,
        coalesce(
            t.invalid_reason,
            case
                when p.product_id is null then 'unknown product'
                when t.unit_price < 0 and p.product_type = 'merchandise' then 'negative unit_price'
            end
        ) as invalid_reason,
        'pos_transactions' as source_table,
        t._source_file,
        t._source_row,
        f.file_hash as _file_hash,
        cast(null as {{ dbt.type_string() }}) as _header_file,
        cast(null as {{ dbt.type_string() }}) as _header_hash
    from {{ ref('stg_pos_transactions') }} as t
    left join products as p on p.product_id = t.product_id
    left join files as f on f.source = 'pos_transactions' and f._source_file = t._source_file
),

lines as (
    select * from web_lines
    union all
    select * from pos_lines
)

select
    l.*,
    -- what the line is (NULL for an unusable line): a customer sale, a returned sale (negative
    -- quantity), a stock adjustment (negative quantity at price 0: a write-off, no money moved), or a
    -- line that is not a customer sale (postage, fees, vouchers, adjustments, test items)
    case
        when l.invalid_reason is not null then null
        when l.product_type <> 'merchandise' then 'non_sale'
        when l.quantity < 0 and l.unit_price = 0 then 'stock_adjustment'
        when l.quantity < 0 then 'return'
        else 'sale'
    end as line_type,
    -- the unit processed together: an order with all its lines (a line without an order id alone)
    {{ dbt.concat(["l.source_table", "':'", "coalesce(l.order_id, " ~ dbt.concat(["'row:'", "l._source_file", "'#'", "cast(l._source_row as " ~ dbt.type_string() ~ ")"]) ~ ")"]) }} as _order_key,
    c.catalogue_hash as _catalogue_hash
from lines as l
cross join catalogue as c
