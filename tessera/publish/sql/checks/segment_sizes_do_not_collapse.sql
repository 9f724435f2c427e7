-- Violations: RFM segments of at least 20 members in the published version that shrink below half in {table}
select count(*) from (
    select p.rfm_segment, count(*) as previous_size
    from publish.customer_segments as p group by 1 having count(*) >= 20
) as prev
left join (select rfm_segment, count(*) as size from {table} group by 1) as cur using (rfm_segment)
where coalesce(cur.size, 0) < 0.5 * prev.previous_size
