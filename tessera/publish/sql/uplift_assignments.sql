-- the campaign assignments publish.campaign_uplift measures (recorded by campaign_assignments.sql)
select campaign, customer_key, holdout_group, assigned_on from campaigns.assignments
