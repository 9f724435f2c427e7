-- Violations: customers of dim_customers without an erasure request missing from {table}. Read
-- from the mart itself, not from audiences.active_customers the table is built from, so that a
-- wrong filter there is caught here.
select count(*) from marts.dim_customers as a
where not a.is_erasure_requested and customer_pkey(a.customer_key) not in (select customer_pkey from {table})
