-- After publish.customer_segments is swapped in: segment membership history, one row per customer,
-- segment type and segment with the as-of dates it held from and until (valid_to NULL = still a
-- member). Dates are data dates, so re-publishing unchanged data changes nothing.
create table if not exists publish.customer_segment_history (
    customer_pkey varchar, segment_type varchar, segment varchar, valid_from date, valid_to date
);

create or replace temp table __segment_memberships as
select customer_pkey, 'rfm' as segment_type, rfm_segment as segment, cast(as_of_date as date) as as_of_date
from publish.customer_segments
union all
select customer_pkey, 'cluster', cast(cluster_id as varchar) || ': ' || cluster_description, cast(as_of_date as date)
from publish.customer_segments where cluster_id is not null
union all
select customer_pkey, 'rule', rule_segment, cast(as_of_date as date)
from publish.customer_segments where rule_segment is not null;

update publish.customer_segment_history as h
set valid_to = (select max(as_of_date) from __segment_memberships)
where h.valid_to is null
  and not exists (
      select 1 from __segment_memberships as m
      where m.customer_pkey = h.customer_pkey and m.segment_type = h.segment_type and m.segment = h.segment
  );

insert into publish.customer_segment_history (customer_pkey, segment_type, segment, valid_from, valid_to)
select m.customer_pkey, m.segment_type, m.segment, m.as_of_date, null
from __segment_memberships as m
where not exists (
    select 1 from publish.customer_segment_history as h
    where h.valid_to is null
      and h.customer_pkey = m.customer_pkey and h.segment_type = m.segment_type and h.segment = m.segment
);
