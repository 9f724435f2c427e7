-- this run's erasure requests (__requests) and every identifier of their people (__erase):
-- key, published key, identity-graph nodes, the request's own CRM id and email, the orders' ids
create or replace temp table __requests as
select r.request_id, r.customer_key, r.requested_at, p.customer_id, p.email
from intermediate.int_privacy_requests_resolved as r
inner join staging.stg_privacy as p on p.request_id = r.request_id
where r.request_type = 'erasure';

create or replace temp table __erase as
select request_id, 'key' as kind, customer_key as value from __requests where customer_key is not null
union all
select request_id, 'pkey', customer_pkey(customer_key) from __requests where customer_key is not null
union all
select q.request_id, n.node_type, n.node_value
from __requests as q inner join intermediate.int_identities_resolved as n on n.customer_key = q.customer_key
union all
select request_id, 'crm', customer_id from __requests where customer_id is not null
union all
select request_id, 'email', email from __requests where email is not null;

insert into __erase
select distinct e.request_id, 'order', o.order_id
from __erase as e inner join staging.stg_orders as o on o.customer_id = e.value
where e.kind = 'crm' and o.order_id is not null;
