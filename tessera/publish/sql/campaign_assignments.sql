-- After publish.customer_segments is swapped in: who was in treatment or control of each segment's
-- campaign on the day its audience was published, kept internally with customer_key (never
-- published) so the uplift can follow their orders. Re-publishing the same day adds nothing.
create schema if not exists campaigns;

create table if not exists campaigns.assignments (
    campaign varchar, customer_key varchar, holdout_group varchar, assigned_on date
);

insert into campaigns.assignments
select n.campaign, n.customer_key, n.holdout_group, n.assigned_on
from (
    select 'rfm:' || s.rfm_segment as campaign, c.customer_key, s.rfm_holdout_group as holdout_group,
        cast(s.as_of_date as date) as assigned_on
    from publish.customer_segments as s
    inner join audiences.active_customers as c on customer_pkey(c.customer_key) = s.customer_pkey
    union all
    select 'rule:' || s.rule_segment, c.customer_key, s.rule_holdout_group, cast(s.as_of_date as date)
    from publish.customer_segments as s
    inner join audiences.active_customers as c on customer_pkey(c.customer_key) = s.customer_pkey
    where s.rule_segment is not null
) as n
where not exists (
    select 1 from campaigns.assignments as a
    where a.campaign = n.campaign and a.customer_key = n.customer_key and a.assigned_on = n.assigned_on
);
