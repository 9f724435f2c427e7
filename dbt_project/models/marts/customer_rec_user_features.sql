{#- Point-in-time user features for the recommender (grain: customer x as_of_date): one row per
    customer per feature snapshot (customer_feature_snapshots), so a model evaluated on a holdout
    that starts at T takes the latest snapshot with as_of_date <= T
    (ml.rec_evaluation.features_as_of) and learns nothing from the holdout through its features.

    - demographics: gender, country, region (UN M49 sub-region, seed `countries`), age band at
      the snapshot date (full years, in tens);
    - behaviour as of the snapshot: RFM score bins and the named RFM segment, scored among the
      customers with an order before that snapshot (the same macros as customer_rfm, which is
      today's snapshot: ties to the lower score, one order is F = 1 and a recency-only segment;
      'none' / 'Prospect' without an order), and the last device seen.

    Rule segments are not here: they are computed for today only. -#}
with

-- a customer who asked for erasure is not ranked with the others (as in customer_rfm), and has
-- no row: no model trains on them (erasure.NOT_ERASED)
snapshots as (
    select customer_key, as_of_date, recency_days, frequency, monetary, last_device
    from {{ ref('customer_feature_snapshots') }}
    where customer_key not in (select customer_key from {{ ref('dim_customers') }} where is_erasure_requested)
),

scored as (
    select
        customer_key,
        as_of_date,
        {{ tessera.rfm_score('recency_days', 'desc', 'as_of_date') }} as r_score,
        {{ tessera.frequency_score('frequency', 'as_of_date') }} as f_score,
        {{ tessera.rfm_score('monetary', 'asc', 'as_of_date') }} as m_score
    from snapshots
    where frequency > 0
),

segment_map as (
    select r_score, fm_score, rfm_segment from {{ ref('rfm_segment_map') }}
)

select
    s.customer_key,
    s.as_of_date,
    c.gender,
    coalesce(c.country_code, 'unknown') as country_code,
    coalesce(k.region, 'unknown') as region,
    case
        when c.birth_date is null or c.birth_date >= s.as_of_date then 'unknown'
        else cast(floor({{ dbt.datediff('c.birth_date', 's.as_of_date', 'day') }} / 365.25 / 10) * 10 as integer) || 's'
    end as age_band,
    coalesce(cast(r.r_score as {{ dbt.type_string() }}), 'none') as r_bin,
    coalesce(cast(r.f_score as {{ dbt.type_string() }}), 'none') as f_bin,
    coalesce(cast(r.m_score as {{ dbt.type_string() }}), 'none') as m_bin,
    {{ tessera.rfm_segment('s.frequency', 'r.r_score', 'm.rfm_segment') }} as rfm_segment,
    s.last_device
from snapshots as s
inner join {{ ref('dim_customers') }} as c on c.customer_key = s.customer_key
left join {{ ref('countries') }} as k on k.country_code = c.country_code
left join scored as r on r.customer_key = s.customer_key and r.as_of_date = s.as_of_date
left join segment_map as m
    on m.r_score = r.r_score
    and m.fm_score = {{ tessera.fm_score('r.f_score', 'r.m_score') }}
