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
        {{ tessera.normalise_phone('s.phone', 'coalesce(c.calling_code, d.calling_code)') }} as phone_e164,
        case upper(trim(s.gender)) when 'F' then 'F' when 'M' then 'M' else 'U' end as gender,
        {{ tessera.clean_text('s.address') }} as address,
        {{ tessera.clean_text('s.city') }} as city,
        {{ tessera.postcode_key('s.postcode') }} as postcode,
        coalesce(c.country_code, '{{ var("default_country") }}') as country_code,

        -- dates and timestamps (UTC)
        {{ tessera.try_cast('s.birth_date', 'date') }} as birth_date,
        {{ tessera.to_utc_timestamp('s.signup_at') }} as signup_at,
        {{ tessera.to_utc_timestamp('s.updated_at') }} as updated_at,

        -- quality flags
        s.email is not null and trim(s.email) <> '' and {{ tessera.normalise_email('s.email') }} is null as has_invalid_email,
        s.country is not null and c.country_code is null as has_unknown_country,
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
    cross join default_country as d
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
        invalid_reason,
        _source_file,
        _source_row
    from renamed
)

select * from checked
