{#- Golden-record survivorship: for each customer and attribute, one value and the record it came
    from. Candidates come from the customer's CRM profiles (trust 1) and, for contact identifiers,
    from store receipts attached to the customer (trust 2). Rules (docs/identity.md):
      most_frequent: the value most profiles agree on; ties -> most recently observed
      trusted_recent: the most trusted source; within it the most recently observed value
      recent:        the most recently observed value (people move house)
    Ties left after that go to the smallest value, so the result is deterministic. -#}
{%- set rules = {
    'first_name': 'most_frequent',
    'last_name': 'most_frequent',
    'birth_date': 'most_frequent',
    'gender': 'most_frequent',
    'email': 'trusted_recent',
    'phone_e164': 'trusted_recent',
    'loyalty_card': 'trusted_recent',
    'address': 'recent',
    'city': 'recent',
    'postcode': 'recent',
    'country_code': 'recent',
} -%}
{%- set from_receipts = {'email': 'email', 'phone_e164': 'phone_e164', 'loyalty_card': 'loyalty_card'} -%}
with

profiles as (
    select
        r.customer_key,
        c.*,
        case when c.gender in ('F', 'M') then c.gender end as known_gender
    from {{ ref('stg_customers') }} as c
    inner join {{ tessera.identity_nodes(['crm']) }} as r on r.node_key = 'crm:' || c.customer_id
    where c.invalid_reason is null
),

receipts as (
    select r.customer_key, t.receipt_id, t.email, t.phone_e164, t.loyalty_card, max(t.transacted_at) as transacted_at
    from {{ ref('stg_pos_transactions') }} as t
    inner join {{ tessera.identity_nodes(['pos']) }} as r on r.node_key = 'pos:' || t.receipt_id
    where t.invalid_reason is null
    group by r.customer_key, t.receipt_id, t.email, t.phone_e164, t.loyalty_card
),

candidates as (
    {%- for attribute, rule in rules.items() %}
    {%- set column = 'known_gender' if attribute == 'gender' else attribute %}
    select
        customer_key,
        '{{ attribute }}' as attribute,
        '{{ rule }}' as rule,
        cast({{ column }} as {{ dbt.type_string() }}) as value,
        'crm:' || customer_id as source_record,
        1 as source_trust,
        -- a profile without timestamps still competes, as the oldest observation
        coalesce(updated_at, signup_at, cast('1900-01-01' as timestamp)) as observed_at
    from profiles
    where {{ column }} is not null
    {%- if attribute in from_receipts %}
    union all
    select
        customer_key,
        '{{ attribute }}',
        '{{ rule }}',
        cast({{ from_receipts[attribute] }} as {{ dbt.type_string() }}),
        'pos:' || receipt_id,
        2,
        transacted_at
    from receipts
    where {{ from_receipts[attribute] }} is not null
    {%- endif %}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

value_stats as (
    select
        customer_key,
        attribute,
        rule,
        value,
        min(source_trust) as source_trust,
        count(*) as support,
        max(observed_at) as last_observed_at,
        {{ tessera.latest_value('source_record', 'observed_at') }} as source_record
    from candidates
    group by customer_key, attribute, rule, value
),

ranked as (
    select
        *,
        row_number() over (
            partition by customer_key, attribute
            order by
                case when rule = 'trusted_recent' then source_trust else 0 end,
                case when rule = 'most_frequent' then support else 0 end desc,
                last_observed_at desc nulls last,
                value
        ) as preference
    from value_stats
)

select
    customer_key,
    {%- for attribute in rules %}
    max(case when attribute = '{{ attribute }}' then value end) as {{ attribute }},
    max(case when attribute = '{{ attribute }}' then source_record end) as {{ attribute }}_source{{ ',' if not loop.last }}
    {%- endfor %}
from ranked
where preference = 1
group by customer_key
