-- Violations: decisions of {table} without a reason
select count(*) from {table} where reason is null or length(trim(reason)) = 0
