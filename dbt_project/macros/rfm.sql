{#- RFM quintile score 1..5 of `column` among the rows of each `partition_by` group (none: all
    rows). cume_dist gives equal values equal scores; `order` 'desc' scores low values high
    (recency: fewer days since the last order is better). One definition for customer_rfm (today)
    and customer_rec_user_features (every snapshot), so the two can never disagree. -#}
{% macro rfm_score(column, order='asc', partition_by=none) -%}
    cast(ceil(5 * cume_dist() over ({% if partition_by %}partition by {{ partition_by }} {% endif %}order by {{ column }} {{ order }}) - 0.000001) as integer)
{%- endmacro %}

{#- The combined frequency-monetary score of seeds/rfm_segment_map (docs/rfm.md). -#}
{% macro fm_score(f_score, m_score) -%}
    cast(round(({{ f_score }} + {{ m_score }}) / 2.0 + 0.01, 0) as integer)
{%- endmacro %}
