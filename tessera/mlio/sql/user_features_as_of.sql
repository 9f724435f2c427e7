-- A customer's features as of a date: their latest snapshot on or before it (NULL: the latest
-- one), the point-in-time rule of ml.rec_evaluation.features_as_of, applied in SQL so that only
-- one row per customer reaches Python, not every snapshot. The columns are ml.rec_lists.USER_FEATURES.
select customer_key, gender, country_code, region, age_band, r_bin, f_bin, m_bin, rfm_segment, last_device
from marts.customer_rec_user_features
where customer_key in (select customer_key from marts.dim_customers where not is_erasure_requested)
  and ($as_of is null or as_of_date <= $as_of)
qualify row_number() over (partition by customer_key order by as_of_date desc) = 1
