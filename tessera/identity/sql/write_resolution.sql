create or replace table identity.identity_map as select * from map_df order by record_id;
insert into identity.identity_merge_history select * from events_df;
create or replace table identity.identity_links as select * from links_df;
