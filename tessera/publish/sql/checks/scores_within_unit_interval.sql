-- Violations: scores of {table} outside [0, 1], or a missing purchase propensity when the model ran
select count(*) from {table}
where (purchase_propensity_30d is null and (select count(purchase_model_run_id) from {table}) > 0)
   or purchase_propensity_30d not between 0 and 1
   or (churn_risk_30d is not null and churn_risk_30d not between 0 and 1)
