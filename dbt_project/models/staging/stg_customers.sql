{#- National-format phones take the calling code of the profile's country; of the default country
    (TESSERA_PHONE_DEFAULT_COUNTRY) only when the profile names none. A profile whose country is
    unknown gets no guess: its national-format number stays empty. -#}
{%- set phone_calling_code = "case when c.country_code is not null then c.calling_code when "
    ~ tessera.clean_text('s.country') ~ " is null then d.calling_code end" -%}
with

source as (
    select * from {{ source('raw', 'customers') }}
),

countries as (
    select
        a.alias,
        c.country_code,
        cast(c.calling_code as {{ dbt.type_string() }}) as calling_code
    from {{ ref('country_aliases') }} as a
    inner join {{ ref('countries') }} as c on c.country_code = a.country_code
),

-- the calling code of a national-format phone number on a profile that names no country
-- (TESSERA_PHONE_DEFAULT_COUNTRY, var default_country): a left join, so a code missing from the
-- seed leaves such numbers empty instead of emptying the model (test
-- assert_phone_default_country_is_known fails the build then)
default_country as (
    select cast(calling_code as {{ dbt.type_string() }}) as calling_code
    from {{ ref('countries') }}
    where country_code = '{{ var("default_country") }}'
),

renamed as (
    select
        -- ids
        {{ tessera.clean_text('s.customer_id') }} as customer_id,
        upper({{ tessera.regex_strip('s.loyalty_card', '[^A-Za-z0-9]') }}) as loyalty_card,

        -- strings
        {{ tessera.name_display('s.first_name') }} as first_name,
        {{ tessera.name_display('s.last_name') }} as last_name,
        {{ tessera.name_key('s.first_name') }} as first_name_key,
        {{ tessera.name_key('s.last_name') }} as last_name_key,
        {{ tessera.normalise_email('s.email') }} as email,
        {{ tessera.normalise_phone('s.phone', phone_calling_code) }} as phone_e164,
        case upper(trim(s.gender)) when 'F' then 'F' when 'M' then 'M' else 'U' end as gender,
        {{ tessera.clean_text('s.address') }} as address,
        {{ tessera.clean_text('s.city') }} as city,
        {{ tessera.postcode_key('s.postcode') }} as postcode,
        c.country_code,

        -- dates and timestamps (UTC)
        {{ tessera.try_cast('s.birth_date', 'date') }} as birth_date,
        {{ tessera.to_utc_timestamp('s.signup_at') }} as signup_at,
        {{ tessera.to_utc_timestamp('s.updated_at') }} as updated_at,

        -- quality flags
        s.email is not null and trim(s.email) <> '' and {{ tessera.normalise_email('s.email') }} is null as has_invalid_email,
        {{ tessera.country_issue('s.country', 'c.country_code') }} is not null as has_unknown_country,
        {{ tessera.country_issue('s.country', 'c.country_code') }} as country_issue,
        -- a national-format number read with the default country's calling code: the profile
        -- names no country, and the number carries no country code of its own
        {{ tessera.clean_text('s.country') }} is null
            and {{ tessera.normalise_phone('s.phone', phone_calling_code) }} is not null
            and not ltrim(s.phone) like '+%'
            and not {{ tessera.regex_strip('s.phone', '[^0-9]') }} like '00%' as phone_country_assumed,
        -- a signup or update in the future would become the golden record's first signup or its
        -- most recent (winning) attributes: the profile is quarantined at the row, with the reason
        coalesce(
            case
                when {{ tessera.clean_text('s.customer_id') }} is null then 'missing customer_id'
            end,
            {{ tessera.timestamp_range_reason(tessera.to_utc_timestamp('s.signup_at'), 'signup_at') }},
            {{ tessera.timestamp_range_reason(tessera.to_utc_timestamp('s.updated_at'), 'updated_at') }}
        ) as invalid_reason,

        -- lineage
        s._source_file,
        s._source_row
    from source as s
    left join countries as c on c.alias = {{ tessera.country_alias_key('s.country') }}
    left join default_country as d on 1 = 1
),

checked as (
    select
        customer_id,
        loyalty_card,
        first_name,
        last_name,
        first_name_key,
        last_name_key,
        email,
        case when {{ tessera.valid_e164('phone_e164') }} then phone_e164 end as phone_e164,
        gender,
        address,
        city,
        postcode,
        country_code,
        birth_date,
        signup_at,
        updated_at,
        has_invalid_email,
        has_unknown_country,
        country_issue,
        phone_country_assumed and {{ tessera.valid_e164('phone_e164') }} as phone_country_assumed,
        invalid_reason,
        _source_file,
        _source_row
    from renamed
)

select * from checked
