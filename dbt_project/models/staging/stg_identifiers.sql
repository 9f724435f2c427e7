{#- A shop's declared person identifiers: one row per delivered (profile, identifier) row.
    id_type is written in lower snake case (' Person ID ' and 'person-id' are person_id); id_value
    is trimmed and otherwise compared exactly (an opaque id: its case may matter). A repeated row is
    the same fact delivered again, not a conflict, so it is not quarantined (identity links each
    pair once). Whether the profile exists is known after staging: int_person_identifiers. -#}
{%- set id_type = "trim(" ~ tessera.regex_replace_all("lower(trim(s.id_type))", "[^a-z0-9]+", " ") ~ ")" -%}
with

source as (
    select * from {{ source('raw', 'identifiers') }}
),

renamed as (
    select
        {{ tessera.clean_text('s.customer_id') }} as customer_id,
        nullif(replace({{ id_type }}, ' ', '_'), '') as id_type,
        {{ tessera.clean_text('s.id_value') }} as id_value,
        {{ tessera.to_utc_timestamp('s.observed_at') }} as observed_at,

        coalesce(case
            when {{ tessera.clean_text('s.customer_id') }} is null then 'missing customer_id'
            when {{ tessera.clean_text('s.id_type') }} is null then 'missing id_type'
            when nullif(replace({{ id_type }}, ' ', '_'), '') is null
                or not {{ tessera.regex_matches("replace(" ~ id_type ~ ", ' ', '_')", "^[a-z]") }} then 'invalid id_type (must start with a letter)'
            when {{ tessera.clean_text('s.id_value') }} is null then 'missing id_value'
            when {{ tessera.clean_text('s.observed_at') }} is not null
                and {{ tessera.to_utc_timestamp('s.observed_at') }} is null then 'unparseable observed_at'
        end,
            {{ tessera.timestamp_range_reason(tessera.to_utc_timestamp('s.observed_at'), 'observed_at') }}
        ) as invalid_reason,

        s._source_file,
        s._source_row
    from source as s
)

select * from renamed
