-- The {kind} segments' email audience of {table} (customer_segments): treatment group only (the
-- control group is held out of the campaign), with email-marketing consent and an address.
-- The segment type (rfm or rule) names the columns.
select s.customer_pkey, c.email, c.first_name, s.{kind}_segment as segment, s.{kind}_holdout_group as holdout_group
from {table} as s
inner join audiences.active_customers as c on customer_pkey(c.customer_key) = s.customer_pkey
where s.{kind}_segment is not null
  and s.{kind}_holdout_group = 'treatment'
  and s.customer_pkey in (
      select customer_pkey(k.customer_key) from audiences.consented_customers as k
      where k.channel = 'email' and k.purpose = 'marketing'
  )
  and c.email is not null
order by s.customer_pkey
