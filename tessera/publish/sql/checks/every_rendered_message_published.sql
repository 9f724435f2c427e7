-- Violations: rendered messages missing from {table}
select count(*) from decisioning.messages where message_id not in (select message_id from {table})
