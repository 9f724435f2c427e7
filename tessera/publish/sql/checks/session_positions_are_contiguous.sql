-- Violations: sessions of {table} whose positions are not exactly 1..n (a gap, a repeat, a
-- product twice), which the scorer would read as another order.
select count(*) from (
    select session_number
    from {table}
    group by session_number
    having min(position) <> 1
        or max(position) <> count(*)
        or count(distinct position) <> count(*)
        or count(distinct product_id) <> count(*)
)
