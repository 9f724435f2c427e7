{#- Currencies of the staging models that hold amounts (stg_orders, stg_pos_transactions,
    stg_products). Two seeds decide, each in one place:
    - seeds/currencies.csv, every active ISO 4217 code (scripts/currency_seed.py writes it): a
      code outside it is a bad value, quarantined like any other;
    - seeds/fx_rates.csv, which codes convert to the base currency and from which day
      (stg_fx_rates gives each rate the days it holds). An ISO code without a rate for the row's
      day is a real sale the pipeline cannot value: it is quarantined with a reason naming the
      code, the day, the file and the row to add to the seed, and the `currency_has_a_rate` data
      test fails on it, which stops the build. -#}

{% macro missing_rate_prefix() -%}no exchange rate for {%- endmacro %}

{#- The rate of `fx_alias` holds on `day` (a date): valid_from <= day < valid_to, or from
    valid_from on for the currency's latest rate. -#}
{% macro fx_rate_holds(fx_alias, day) -%}
    {{ fx_alias }}.valid_from <= {{ day }}
    and ({{ fx_alias }}.valid_to is null or {{ day }} < {{ fx_alias }}.valid_to)
{%- endmacro %}

{#- The reason a row's currency cannot be used, NULL when it can. `delivered` is the value as the
    file has it, `code` the normalised code looked up, `iso_alias` the joined currencies seed row,
    `rate` the joined rate, `day` the date the rate had to hold on (none: the latest rate), `file`
    the row's landing file. -#}
{% macro currency_reason(delivered, code, iso_alias, rate, day, file) -%}
    {%- set day_text = none if day is none else "cast(" ~ day ~ " as " ~ dbt.type_string() ~ ")" -%}
    {%- set missing_rate = ["'" ~ tessera.missing_rate_prefix() ~ " '", code] -%}
    {%- if day_text is not none -%}
        {%- set missing_rate = missing_rate + ["' on '", day_text] -%}
    {%- endif -%}
    {%- set missing_rate = missing_rate + ["' in '", file, "': add a row '", code] -%}
    {%- if day_text is none -%}
        {%- set missing_rate = missing_rate + ["',<valid_from>,'"] -%}
    {%- else -%}
        {%- set missing_rate = missing_rate + ["',<valid_from on or before '", day_text, "'>,'"] -%}
    {%- endif -%}
    {%- set missing_rate = missing_rate + [
        "'<value of 1 '", code, "' in " ~ var('base_currency') ~ "> to dbt_project/seeds/fx_rates.csv'"
    ] -%}
    case
        when {{ iso_alias }}.code is null then {{ dbt.concat([
            "'currency \"'", delivered, "'\" in '", file,
            "' is not an ISO 4217 code (the accepted codes: dbt_project/seeds/currencies.csv)'",
        ]) }}
        when {{ rate }} is null then {{ dbt.concat(missing_rate) }}
    end
{%- endmacro %}

{#- Data test: no row of the model lacks an exchange rate for its currency (the reason above).
    One failing row per reason: the code, the day and the file, and the seed row to add. -#}
{% test currency_has_a_rate(model) %}
select invalid_reason, count(*) as records
from {{ model }}
where invalid_reason like '{{ tessera.missing_rate_prefix() }} %'
group by invalid_reason
{% endtest %}

{#- Data test: every value of the column is above zero (an exchange rate). -#}
{% test positive(model, column_name) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} <= 0
{% endtest %}

{#- Data test on seeds/fx_rates.csv: the base currency converts to itself, 1 to 1, on every day it
    has a rate. -#}
{% test base_currency_rate_is_one(model) %}
select currency, valid_from, rate_to_base
from {{ model }}
where upper(trim(currency)) = '{{ var("base_currency") }}' and rate_to_base <> 1
{% endtest %}
