{#- A table, like stg_events: 6M receipts at 1M customers, whose validity and normalised
    contacts (emails, E.164 phones) are read by int_identities_resolved, int_order_lines_current,
    int_customer_attributes_survived, int_rejected_records, source_reconciliation, the
    quarantine-rate test and the erasure's raw pass; as a view each reading computed them again
    (5.7 s per full reading at 1M customers, issue 9). -#}
{{ config(materialized='table') }}
{%- set currency = "coalesce(upper(trim(s.currency)), '" ~ var('base_currency') ~ "')" %}
{%- set transacted_at = tessera.to_utc_timestamp('s.transacted_at') %}
with

source as (
    select * from {{ source('raw', 'pos_transactions') }}
),

default_country as (
    select cast(calling_code as {{ dbt.type_string() }}) as calling_code
    from {{ ref('countries') }}
    where country_code = '{{ var("default_country") }}'
),

fx as (
    select currency, valid_from, valid_to, rate_to_base from {{ ref('stg_fx_rates') }}
),

iso_currencies as (
    select code from {{ ref('currencies') }}
),

repeats as (
    {{ tessera.repeated_deliveries(source('raw', 'pos_transactions'), tessera.clean_text('transaction_line_id')) }}
),

renamed as (
    select
        -- ids
        {{ tessera.clean_text('s.transaction_line_id') }} as transaction_line_id,
        {{ tessera.clean_text('s.receipt_id') }} as receipt_id,
        {{ tessera.clean_text('s.store_id') }} as store_id,
        {{ tessera.clean_text('s.product_id') }} as product_id,
        upper({{ tessera.regex_strip('s.loyalty_card', '[^A-Za-z0-9]') }}) as loyalty_card,

        -- buyer identifiers (stores are in the default country)
        {{ tessera.normalise_email('s.email') }} as email,
        {{ tessera.normalise_phone('s.phone', 'd.calling_code') }} as phone_e164,

        -- numerics
        {{ tessera.try_cast('s.quantity', 'integer') }} as quantity,
        {{ tessera.try_cast('s.unit_price', 'decimal(18, 2)') }} as unit_price,
        coalesce(upper(trim(s.currency)), '{{ var("base_currency") }}') as currency,
        fx.rate_to_base,

        -- timestamps
        {{ tessera.to_utc_timestamp('s.transacted_at') }} as transacted_at,

        coalesce(case
            when {{ tessera.clean_text('s.transaction_line_id') }} is null then 'missing transaction_line_id'
            when {{ tessera.clean_text('s.receipt_id') }} is null then 'missing receipt_id'
            when {{ tessera.clean_text('s.product_id') }} is null then 'missing product_id'
            when {{ tessera.try_cast('s.quantity', 'integer') }} is null then 'unparseable quantity'
            when {{ tessera.try_cast('s.quantity', 'integer') }} = 0 then 'zero quantity'
            when {{ tessera.try_cast('s.unit_price', 'decimal(18, 2)') }} is null then 'unparseable unit_price'
            -- a negative unit price is judged in int_order_lines_current (by the product's type)
            when {{ tessera.to_utc_timestamp('s.transacted_at') }} is null then 'unparseable transacted_at'
        end,
            {{ tessera.timestamp_range_reason(tessera.to_utc_timestamp('s.transacted_at'), 'transacted_at') }},
            {{ tessera.duplicate_reason('dup', 'transaction_line_id') }},
            -- last: a line quarantined for another reason does not stop the build for its rate
            {{ tessera.currency_reason(
                's.currency', currency, 'iso', 'fx.rate_to_base', 'cast(' ~ transacted_at ~ ' as date)', 's._source_file'
            ) }}
        ) as invalid_reason,

        s._source_file,
        s._source_row
    from source as s
    cross join default_country as d
    left join iso_currencies as iso on iso.code = {{ currency }}
    -- the rate that holds on the receipt's (UTC) day
    left join fx on fx.currency = {{ currency }}
        and {{ tessera.fx_rate_holds('fx', 'cast(' ~ transacted_at ~ ' as date)') }}
    left join repeats as dup on dup._source_file = s._source_file and dup._source_row = s._source_row
)

select * from renamed
