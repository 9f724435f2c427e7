{#- Values set aside while their record went on: the record is usable, one of its values is not,
    and that value became NULL (or was read with an assumption) instead of a guess. One row per
    source, file, column and reason, with how many records and the first of them; no personal
    values (a country as delivered is in the reason, an email never is). The rows themselves are in
    staging (stg_customers.country_issue, has_invalid_email, phone_country_assumed). -#}
with

customers as (
    select _source_file, _source_row, 'country' as column_name, country_issue as reason
    from {{ ref('stg_customers') }}
    where invalid_reason is null and country_issue is not null
    union all
    select _source_file, _source_row, 'email', 'invalid email address: email left empty'
    from {{ ref('stg_customers') }}
    where invalid_reason is null and has_invalid_email
    union all
    select
        _source_file,
        _source_row,
        'phone',
        'national-format phone on a profile without a country: read with the calling code of '
            || 'TESSERA_PHONE_DEFAULT_COUNTRY ({{ var("default_country") }})'
    from {{ ref('stg_customers') }}
    where invalid_reason is null and phone_country_assumed
)

select
    'customers' as source,
    _source_file,
    column_name,
    reason,
    count(*) as records,
    min(_source_row) as first_source_row
from customers
group by _source_file, column_name, reason
