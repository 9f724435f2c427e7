{#- One row per order: web and app orders and store receipts. Totals count only usable lines.
    customer_key is the current identity graph's: from the CRM customer on a web or app order, from
    the receipt's links for a store receipt.

    Returns are business facts, not errors (docs/landing_contract.md, "Returns"):
    - status: the order's own (completed, cancelled, returned), except that a document of returned
      lines only (a credit note, a store refund) is 'returned', and one without any sale or return
      line (postage, fees or adjustments alone, a stock write-off) is 'non_sale';
    - gross_sales_base: what was sold (sale lines; none for a cancelled order);
    - returned_base: what was given back (return lines, and every sale line of a returned order);
    - net_revenue_base = gross_sales_base - returned_base: what the customer kept. RFM monetary and
      the value features sum it over every order, so a customer who returned everything is worth 0;
    - other_base: lines that are not customer sales (postage, fees, vouchers, adjustments);
    - order_total_base: the merchandise lines' signed total, as the order states it. -#}
with

lines as (
    select * from {{ ref('int_order_lines') }} where invalid_reason is null
),

keys as (
    select node_key, customer_key from {{ ref('int_identities_resolved') }}
),

per_order as (
    select
        l.order_id,
        {{ tessera.latest_value('l.channel', 'l.ordered_at') }} as channel,
        max(k.customer_key) as customer_key,
        min(l.status) as source_status,
        min(l.currency) as currency,
        min(l.ordered_at) as ordered_at,
        count(*) as line_count,
        sum(case when l.line_type = 'sale' then 1 else 0 end) as sale_lines,
        sum(case when l.line_type = 'return' then 1 else 0 end) as return_lines,
        coalesce(sum(case when l.line_type = 'sale' then l.quantity end), 0) as item_quantity,
        cast(coalesce(sum(case when l.line_type = 'sale' then l.quantity * l.unit_price_base end), 0) as decimal(18, 2)) as sales_base,
        cast(coalesce(sum(case when l.line_type = 'return' then -l.quantity * l.unit_price_base end), 0) as decimal(18, 2)) as return_lines_base,
        cast(coalesce(sum(case when l.line_type = 'non_sale' then l.quantity * l.unit_price_base end), 0) as decimal(18, 2)) as other_base,
        cast(coalesce(sum(case when l.line_type in ('sale', 'return') then l.quantity * l.unit_price_base end), 0) as decimal(18, 2)) as order_total_base
    from lines as l
    left join keys as k on k.node_key = {{ tessera.order_line_node_key('l') }}
    group by l.order_id
),

classified as (
    select
        *,
        case
            when sale_lines = 0 and return_lines > 0 then 'returned'
            when sale_lines = 0 then 'non_sale'
            else source_status
        end as status
    from per_order
),

valued as (
    select
        *,
        cast(case when status = 'cancelled' then 0 else sales_base end as decimal(18, 2)) as gross_sales_base,
        cast(return_lines_base + case when status = 'returned' then sales_base else 0 end as decimal(18, 2)) as returned_base
    from classified
)

select
    order_id,
    channel,
    customer_key,
    status,
    currency,
    ordered_at,
    line_count,
    item_quantity,
    order_total_base,
    gross_sales_base,
    returned_base,
    cast(gross_sales_base - returned_base as decimal(18, 2)) as net_revenue_base,
    other_base
from valued
