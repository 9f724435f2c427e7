-- Violations: messages of {table} whose stored body does not hash to its body_ref
select count(*) from {table} as t
inner join decisioning.messages as m on m.message_id = t.message_id
where t.body_ref <> 'sha256:' || sha256(m.body)
