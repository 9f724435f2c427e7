{#- TESSERA_PHONE_DEFAULT_COUNTRY (var default_country) must be an ISO 3166-1 alpha-2 code of the
    countries seed with a calling code: otherwise national-format phone numbers of profiles without
    a country, and of every store receipt, could not be read. Fails with the value it got. -#}
select '{{ var("default_country") }}' as phone_default_country
where not exists (
    select 1 from {{ ref('countries') }}
    where country_code = '{{ var("default_country") }}' and calling_code is not null
)
