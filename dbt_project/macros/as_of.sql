{#- The "as of" date of features and RFM: var('as_of_date') when set, else the day after the latest
    completed order, so a rebuild on the same input is the same on any calendar day. Returns a
    scalar subquery. -#}
{% macro as_of_date() -%}
    {%- if var('as_of_date') -%}
    cast('{{ var("as_of_date") }}' as date)
    {%- else -%}
    (select cast({{ dbt.dateadd('day', 1, tessera.latest_activity('max(ordered_at)')) }} as date) from {{ ref('fct_orders') }} where status = 'completed')
    {%- endif -%}
{%- endmacro %}

{#- `latest_order`, or on a shop without any completed order (a clickstream alone: docs/landing_contract.md,
    "Partial shops") the latest usable clickstream event: features and segments are then as of the
    day after the shop's last activity, not of no day at all. -#}
{% macro latest_activity(latest_order) -%}
    coalesce({{ latest_order }}, (select max(event_at) from {{ ref('int_events') }}))
{%- endmacro %}

{#- True when `ts` falls in the trailing window of the snapshot with offset `d`: at or after
    b.window_start_<d> and strictly before b.cutoff_<d> (columns of the model's `bounds` row). -#}
{% macro in_snapshot_window(ts, d) -%}
    ({{ ts }} < b.cutoff_{{ d }} and {{ ts }} >= b.window_start_{{ d }})
{%- endmacro %}

{#- One value per snapshot row: `template` with {o} replaced by the row's offset, chosen by
    snap.offset_days (a row of the model's `offsets`). Lets a model compute per-snapshot columns
    x_<offset> in one pass and unpivot them without reading its CTEs once per snapshot. -#}
{% macro pick_snapshot(offsets, template) -%}
    case snap.offset_days
    {%- for d in offsets %} when {{ d }} then {{ template | replace('{o}', d | string) }}{% endfor %} end
{%- endmacro %}

{#- The snapshot offsets as rows of one column, offset_days. -#}
{% macro snapshot_offsets(offsets) -%}
    {%- for d in offsets %}
    select {{ d }} as offset_days{{ ' union all' if not loop.last }}
    {%- endfor %}
{%- endmacro %}
