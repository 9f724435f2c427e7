{#- The consent pairs of var('consent_purposes') as rows: channel, purpose, default_granted. -#}
{% macro consent_matrix() -%}
    {%- for c in var('consent_purposes') %}
    select '{{ c.channel }}' as channel, '{{ c.purpose }}' as purpose, {{ 'true' if c.default else 'false' }} as default_granted
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
{%- endmacro %}

{#- The channels (or purposes) a consent record may name: those of the matrix, and 'all'. -#}
{% macro consent_values(field) -%}
    {%- set values = ['all'] -%}
    {%- for c in var('consent_purposes') -%}
        {%- if c[field] not in values -%}{%- do values.append(c[field]) -%}{%- endif -%}
    {%- endfor -%}
    ({%- for v in values -%}'{{ v }}'{%- if not loop.last %}, {% endif -%}{%- endfor -%})
{%- endmacro %}
