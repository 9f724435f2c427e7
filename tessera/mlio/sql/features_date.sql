-- the snapshot that the features as of a date come from (user_features_as_of.sql)
select max(as_of_date) from marts.customer_rec_user_features
where customer_key in (select customer_key from marts.dim_customers where not is_erasure_requested)
  and as_of_date <= $as_of
