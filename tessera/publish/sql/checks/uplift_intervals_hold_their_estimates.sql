-- Violations: campaigns of {table} whose interval misses its estimate, with conversions outside
-- [0, 1] or a group of fewer than two customers
select count(*) from {table}
where not (conversion_uplift between conversion_uplift_low and conversion_uplift_high)
   or not (revenue_uplift_per_customer between revenue_uplift_low and revenue_uplift_high)
   or treatment_conversion not between 0 and 1 or control_conversion not between 0 and 1
   or treatment_customers < 2 or control_customers < 2
