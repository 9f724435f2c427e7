-- the render contexts of one variant's messages to send (render.context_sql binds the values)
select
    d.message_id, d.customer_key, d.decided_on,
    c.first_name, s.rfm_segment, g.rule_segment, k.cluster_description, f.top_category, f.last_device,
    case when coalesce(pc.granted, false) then coalesce(rec.items, pop.items) else pop.items end as recommendations,
    coalesce(cart.items, []) as cart_items
from decisioning.decisions as d
inner join marts.dim_customers as c on c.customer_key = d.customer_key
left join marts.customer_rfm as s on s.customer_key = d.customer_key
left join marts.customer_rule_segments as g on g.customer_key = d.customer_key
left join ml.customer_clusters as k on k.customer_key = d.customer_key
left join marts.customer_features as f on f.customer_key = d.customer_key
left join marts.customer_consents as pc
    on pc.customer_key = d.customer_key and pc.channel = $purpose_channel and pc.purpose = 'personalization'
left join decisioning.render_recommendations as rec on rec.customer_key = d.customer_key
cross join decisioning.render_popular as pop
left join decisioning.render_cart as cart on cart.customer_key = d.customer_key
where d.decision = 'send' and d.action_id = $action_id and d.variant_id = $variant_id
order by message_id
