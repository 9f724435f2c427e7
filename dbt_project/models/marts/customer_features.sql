{#- The customer features mart: one row per customer, as of the current as-of date (the offset-0
    snapshot of customer_feature_snapshots). -#}
select * from {{ ref('customer_feature_snapshots') }}
where offset_days = 0
