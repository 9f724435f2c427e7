-- A negative unit price is allowed only on a line that is not a customer sale (an adjustment such
-- as written-off bad debt); a customer product at a negative price is quarantined in
-- int_order_lines_current. Replaces the fct_order_items suite's "prices are not negative", which
-- quarantined Online Retail's bad-debt adjustments as errors (issue 32).
select order_item_id, product_id, line_type, unit_price
from {{ ref('fct_order_items') }}
where unit_price < 0 and line_type <> 'non_sale'
