{#- Generic test: no two rows share the same values in the given columns (dbt_utils is not
    reachable here, so we keep our own). -#}
{% test unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
