{#- RFM scoring, one definition for customer_rfm (today) and customer_rec_user_features (every
    snapshot), so the two can never disagree. Why these rules: docs/rfm.md. -#}

{#- Score 1..5 of `column` among the rows of each `partition_by` group (none: all rows):
    1 + floor(5 x the share of rows with a strictly worse value). Tied rows share the LOWER score
    of their tie (rank() gives a tie its first position), so a value held by most customers cannot
    lift them all to the top score, as cume_dist did. `order` 'desc' scores low values high
    (recency: fewer days since the last order is better). -#}
{% macro rfm_score(column, order='asc', partition_by=none) -%}
    {%- set partition = 'partition by ' ~ partition_by if partition_by else '' -%}
    (1 + cast(floor(5 * cast(rank() over ({{ partition }} order by {{ column }} {{ order }}) - 1 as double)
        / count(*) over ({{ partition }})) as integer))
{%- endmacro %}

{#- Frequency score 1..5 of buyers (`column` >= 1). A fixed threshold first: one order is always
    F = 1, whatever share of customers bought once. Repeat buyers are scored 2..5 among repeat
    buyers only (of each `partition_by` group): 2 + floor(4 x the share of repeat buyers with
    strictly fewer orders), ties to the lower score. -#}
{% macro frequency_score(column, partition_by=none) -%}
    {%- set partition = 'partition by ' ~ (partition_by ~ ', ' if partition_by else '') ~ column ~ ' > 1' -%}
    (case when {{ column }} = 1 then 1
        else 2 + cast(floor(4 * cast(rank() over ({{ partition }} order by {{ column }}) - 1 as double)
            / count(*) over ({{ partition }})) as integer) end)
{%- endmacro %}

{#- The combined frequency-monetary score of seeds/rfm_segment_map (docs/rfm.md). -#}
{% macro fm_score(f_score, m_score) -%}
    cast(round(({{ f_score }} + {{ m_score }}) / 2.0 + 0.01, 0) as integer)
{%- endmacro %}

{#- The named RFM segment. No completed order: Prospect. One order: a segment by recency alone,
    never Champions, Loyal or Can't Lose Them however much was spent (one order is not loyalty).
    Repeat buyers: `mapped_segment`, the (R, FM) cell of seeds/rfm_segment_map; a cell missing
    from the seed stays null and fails the not_null test instead of becoming a default. -#}
{% macro rfm_segment(frequency, r_score, mapped_segment) -%}
    case
        when {{ frequency }} is null or {{ frequency }} = 0 then 'Prospect'
        when {{ frequency }} = 1 then
            case {{ r_score }}
                when 5 then 'New'
                when 4 then 'Promising'
                when 3 then 'About to Sleep'
                when 2 then 'Hibernating'
                when 1 then 'Lost'
            end
        else {{ mapped_segment }}
    end
{%- endmacro %}
