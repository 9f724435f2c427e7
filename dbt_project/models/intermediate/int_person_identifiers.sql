{#- The declared identifiers identity resolution reads (contract source identifiers): one row per
    delivered row, with invalid_reason NULL for those it uses. On top of staging's reasons, a row
    whose customer_id is no person record (int_person_records: a usable CRM profile) is set aside
    as 'unknown profile': it has nothing to link. It is quarantined, not lost, and goes on by
    itself once its profile arrives, as this model is rebuilt from every row each run. -#}
select
    i.customer_id,
    i.id_type,
    i.id_value,
    i.observed_at,
    coalesce(
        i.invalid_reason,
        case when p.record_id is null then 'unknown profile: no usable CRM profile with this customer_id' end
    ) as invalid_reason,
    i._source_file,
    i._source_row
from {{ ref('stg_identifiers') }} as i
left join {{ ref('int_person_records') }} as p on p.record_id = i.customer_id
