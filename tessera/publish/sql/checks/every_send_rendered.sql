-- Violations: decisions to send whose message is missing from {table}
select count(*) from decisioning.decisions where decision = 'send'
and message_id not in (select message_id from {table})
