-- After publish.campaign_outbox is swapped in: the outbox records what it sent. decisioning.sends
-- feeds frequency caps and the bandit; a re-publish on the same decision day replaces that day's sends.
create table if not exists decisioning.sends (
    message_id varchar, customer_key varchar, action_id varchar, variant_id varchar, channel varchar, decided_on date
);

delete from decisioning.sends where decided_on in (select distinct decided_on from decisioning.decisions);

insert into decisioning.sends
select m.message_id, m.customer_key, m.action_id, m.variant_id, m.channel, m.decided_on
from decisioning.messages as m
where m.message_id in (select message_id from publish.campaign_outbox);
