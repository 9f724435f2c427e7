{#- One row per exchange rate of seeds/fx_rates.csv with the days it holds: from valid_from up to,
    not including, the currency's next valid_from (valid_to; NULL for its latest rate, which holds
    from then on). An amount dated d converts with the row where valid_from <= d < valid_to
    (tessera.fx_rate_holds). -#}
with

source as (
    select * from {{ ref('fx_rates') }}
),

renamed as (
    select
        -- strings
        upper(trim(currency)) as currency,

        -- numerics
        rate_to_base,

        -- dates
        cast(valid_from as date) as valid_from,
        lead(cast(valid_from as date)) over (
            partition by upper(trim(currency)) order by cast(valid_from as date)
        ) as valid_to
    from source
)

select * from renamed
