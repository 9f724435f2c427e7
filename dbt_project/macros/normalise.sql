{#- Normalisation helpers shared by the staging models. Each returns NULL for a value that is
    missing or does not have the expected shape, so the caller can flag it. -#}

{#- Lower-case, trimmed email; NULL unless it looks like local@domain.tld. -#}
{% macro normalise_email(expr) -%}
    case
        when {{ tessera.regex_matches("lower(trim(" ~ expr ~ "))", "^[a-z0-9._%+-]+@[a-z0-9-]+(\\.[a-z0-9-]+)*\\.[a-z]{2,}$") }}
            then lower(trim({{ expr }}))
    end
{%- endmacro %}

{#- E.164 phone: "+<country code><subscriber number>", digits only, 8 to 15 digits.
    International forms (+.. or 00..) keep their country code; a national form with a leading
    trunk 0 takes the calling code of the record's country; NANP numbers (calling code 1) may be
    written with or without the leading 1. -#}
{% macro normalise_phone(expr, calling_code_expr) -%}
    {%- set digits = tessera.regex_strip(expr, "[^0-9]") -%}
    {%- set plus = "ltrim(" ~ expr ~ ") like '+%'" -%}
    case
        when length({{ digits }}) < 7 then null
        when {{ plus }} then '+' || {{ digits }}
        when {{ digits }} like '00%' then '+' || substr({{ digits }}, 3)
        when {{ calling_code_expr }} = '1' and length({{ digits }}) = 11 and {{ digits }} like '1%' then '+' || {{ digits }}
        when {{ calling_code_expr }} = '1' and length({{ digits }}) = 10 then '+1' || {{ digits }}
        when {{ digits }} like '0%' then '+' || {{ calling_code_expr }} || substr({{ digits }}, 2)
    end
{%- endmacro %}

{% macro valid_e164(expr) -%}
    {{ tessera.regex_matches(expr, "^\\+[1-9][0-9]{7,14}$") }}
{%- endmacro %}

{#- Trimmed, single-spaced, lower-case matching key for a person name. -#}
{% macro name_key(expr) -%}
    nullif(lower(trim({{ tessera.regex_replace_all(expr, "\\s+", " ") }})), '')
{%- endmacro %}

{#- Display form of a one-word name: first letter upper case, the rest lower case. -#}
{% macro name_display(expr) -%}
    nullif(upper(substr(trim({{ expr }}), 1, 1)) || lower(substr(trim({{ expr }}), 2)), '')
{%- endmacro %}

{% macro clean_text(expr) -%}
    nullif(trim({{ expr }}), '')
{%- endmacro %}

{#- Postcodes compare upper case without inner spaces. -#}
{% macro postcode_key(expr) -%}
    nullif(upper({{ tessera.regex_strip(expr, "[^A-Za-z0-9]") }}), '')
{%- endmacro %}

{#- Join target to turn any accepted country spelling into ISO 3166-1 alpha-2 (seed
    country_aliases: every code and English name of the 249 ISO 3166-1 countries, written by
    scripts/country_seeds.py). -#}
{% macro country_alias_key(expr) -%}
    lower(trim({{ expr }}))
{%- endmacro %}

{#- Why a delivered country did not become a country code: NULL when it did, or when none was
    delivered. `raw_expr` is the value as delivered, `code_expr` the code its alias join found.
    Nothing takes the place of an unknown country: the code stays NULL and this says why. -#}
{% macro country_issue(raw_expr, code_expr) -%}
    case
        when {{ tessera.clean_text(raw_expr) }} is not null and {{ code_expr }} is null
            then 'unknown country ''' || substr(trim({{ raw_expr }}), 1, 60)
                || ''': not an ISO 3166-1 code or English name (seed country_aliases), country_code left empty'
    end
{%- endmacro %}
