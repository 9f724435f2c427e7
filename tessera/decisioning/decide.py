"""Next best actions: for each customer and channel, the action to take, and why.

The catalogue compiles to SQL run on the warehouse (the work is set-based: one pass per action over
the customers, then one ranking), and the bandit assigns variants in NumPy. The steps:

1. Eligible: every (customer, action) whose trigger and conditions hold, with its weighted score
   and the reason in words. Customers who asked for erasure are not in the base (it starts from
   audiences.active_customers). An action on a channel the customer cannot be reached on (REACH:
   email without a valid address, push without app use, a web banner for someone never seen on
   the site or app) is not eligible: no decision is made for that channel, and
   decisioning.unreachable counts, per channel, the customers left out so.
2. Frequency cap: an action sent to the customer `frequency_cap_per_week` times in the 7 days
   before the decision day (decisioning.sends) is skipped; the next eligible one is taken. An
   action's count is that of its cap group (catalogue `cap_group`) when it has one, and counts the
   realtime trigger worker's sends too (decisioning.realtime_sends, from the realtime outbox:
   tessera/realtime/outbox.py), from 7 days before the decision day on.
3. Choice per customer and channel: explicit rules first, highest priority first (ties: score,
   then action id); otherwise the highest weighted score. Only when every eligible action is
   capped is a capped one recorded (decision 'capped').
4. Consent and holdout: the chosen action is sent only with the channel's consent
   (catalogue.CHANNELS) and when the customer is in the treatment group of the action's campaign
   'nba:<action id>' (tessera/publish/holdout.py); otherwise it is recorded as 'no_consent' or 'holdout'
   and nothing is sent.
5. Variants of the messages to send, by Thompson sampling (tessera/decisioning/bandit.py), with
   each message's draws hashed from its message id.

The weighted score, each term in [0, 1]:

    score = w_priority * priority / 100
          + w_propensity * the action's propensity score (ml.propensity_scores)
          + w_recommendation * recommendation affinity

with the weights of the catalogue's `scoring` block (summing to 1). Recommendation affinity is the
percentile, among customers with a personalised list, of the mean score of their top three
recommendations (0 without a personalised list).
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa

from tessera.decisioning import bandit, reasons
from tessera.decisioning.catalogue import CHANNEL_CONSENT_SQL, CHANNELS, Action, Catalogue
from tessera.publish.holdout import holdout_group_sql
from tessera.sql import Params, ident

AS_OF = "(select cast(max(as_of_date) as date) from marts.customer_rfm)"

# Per channel: when a customer (active_customers `c`) can be reached on it, and what is missing
# otherwise. An email needs a valid address (a delivery without its email column leaves none); the
# data holds no push tokens, so a push needs app use (an order placed in the app); a web banner
# needs the customer to be recognisable on the site or app (a linked cookie or a web/app order).
_APP_ORDER = (
    "exists (select 1 from marts.fct_orders as o where o.customer_key = c.customer_key and lower(o.channel) = 'app')"
)
_ONLINE_ORDER = "exists (select 1 from marts.fct_orders as o where o.customer_key = c.customer_key and lower(o.channel) in ('web', 'app'))"
REACH = {
    "email": ("c.email is not null", "no valid email address"),
    "push": (_APP_ORDER, "no app use on record (no order placed in the app)"),
    "web_banner": (f"(coalesce(c.cookie_count, 0) > 0 or {_ONLINE_ORDER})", "never seen on the website or app"),
}
if set(REACH) != set(CHANNELS):
    raise RuntimeError(f"decide.REACH must say how every channel reaches a customer: {sorted(CHANNELS)}")
UNREACHABLE_DDL = (
    "create or replace table decisioning.unreachable (channel varchar, reason varchar, customers bigint, "
    "customers_with_an_eligible_action bigint)"
)
SENDS_DDL = """
create table if not exists decisioning.sends (
    message_id varchar, customer_key varchar, action_id varchar, variant_id varchar, channel varchar, decided_on date
)
"""
# the messages the realtime trigger worker sent (tessera/realtime/outbox.py load_sends fills it
# before each decision run); the same columns as decisioning.sends
REALTIME_SENDS_DDL = SENDS_DDL.replace("decisioning.sends", "decisioning.realtime_sends")


CART_DAYS = 7
CART_PARAMS = {"cart_days": CART_DAYS}


def cart_sql(as_of_ts: str) -> str:
    """Each customer's cart as of `as_of_ts` (a SQL timestamp): the active products they added in the
    CART_DAYS before it (bound as $cart_days: CART_PARAMS) and have not ordered since, with when each was last added. Decisions
    (condition `cart: not_empty`) and rendering (`cart_items`) read the same definition."""
    return f"""
        select e.customer_key, e.product_id, max(e.event_at) as added_at
        from marts.fct_events as e
        inner join marts.dim_products as p on p.product_id = e.product_id and p.is_active
        where e.event_type = 'add_to_cart' and e.customer_key is not null
          and e.event_at >= {as_of_ts} - to_days(cast($cart_days as integer)) and e.event_at < {as_of_ts}
          and not exists (
              select 1 from marts.fct_order_items as o
              where o.customer_key = e.customer_key and o.product_id = e.product_id and o.ordered_at >= e.event_at
                and o.line_type = 'sale'
          )
        group by e.customer_key, e.product_id"""


def _test_sql(test: dict, p: Params) -> tuple[str, str]:
    if test["kind"] == "cart":
        return "b.cart_items > 0", "'cart holds ' || b.cart_items || ' product(s)'"
    column = "b." + ident(test["feature"] if test["kind"] == "feature" else test["score"])
    sql = f"{column} {test['op']} {p.bind(test['value'])}"  # op: one of catalogue.OPS
    name = test.get("feature") or test["score"]
    value = f"coalesce(cast({column} as varchar), 'n/a')"
    said = f" {test['op']} {test['value']}"
    return sql, f"{p.bind(name + ' ')} || {value} || {p.bind(said)}"


def trigger_sql(action: Action, p: Params) -> tuple[str, str]:
    """The trigger as a condition on the base row `b`, and a SQL text expression saying why it holds."""
    t = action.trigger
    if t["kind"] == "segment":
        return f"coalesce(b.{ident('in_' + t['segment'])}, false)", p.bind(f"in segment {t['segment']}")
    if t["kind"] == "rfm_segment":
        return (
            f"b.rfm_segment in (select unnest({p.bind(t['segments'], 'varchar[]')}))",
            "'in RFM segment ' || b.rfm_segment",
        )
    if t["kind"] == "event":
        follow = ""
        said = f"{t['event']} in the last {t['within_hours']} hours"
        if t["not_followed_by"]:
            follow = f"""
              and not exists (
                  select 1 from __nba_events as x
                  where x.customer_key = e.customer_key and x.event_type = {p.bind(t["not_followed_by"])}
                    and x.event_at >= e.event_at
              )"""
            said += f" and no {t['not_followed_by']} since"
        sql = f"""exists (
              select 1 from __nba_events as e
              where e.customer_key = b.customer_key and e.event_type = {p.bind(t["event"])}
                and e.event_at >= b.as_of_ts - to_hours({p.bind(t["within_hours"], "bigint")})
                and e.event_at < b.as_of_ts{follow}
          )"""
        return sql, p.bind(said)
    return _test_sql({**t, "kind": "feature"}, p)


def _exact_product(a: float, b: float) -> str:
    """a x b as the exact decimal of their shortest representations: what the SQL literals
    `a * b` gave DuckDB (a DECIMAL product) before the values were bound."""
    return str(Decimal(repr(a)) * Decimal(repr(b)))


def eligible_sql(action: Action, catalogue: Catalogue, p: Params) -> str:
    w = catalogue.weights
    trigger, trigger_why = trigger_sql(action, p)
    tests = [_test_sql(c, p) for c in action.conditions]
    where = " and ".join([trigger, *(f"coalesce({sql}, false)" for sql, _ in tests)])
    why = " || '; ' || ".join([trigger_why, *(w for _, w in tests)])
    prop = f"coalesce(b.{ident(action.propensity)}, 0)"  # a customer without a score counts 0
    score = (
        f"{p.bind(_exact_product(w['priority'], action.priority / 100), 'double')}"
        f" + {p.bind(w['propensity'], 'double')} * {prop}"
        f" + {p.bind(w['recommendation'], 'double')} * coalesce(b.recommendation_affinity, 0)"
    )
    reason = reasons.reason_sql(
        action.id, action.explicit, action.priority, why, action.propensity, f"b.{ident(action.propensity)}",
        "b.recommendation_affinity", score, "b.rfm_segment", p,
    )  # fmt: skip
    return f"""
    select
        b.customer_key, b.as_of_date, {p.bind(action.id, "varchar")} as action_id,
        {p.bind(action.channel, "varchar")} as channel,
        {p.bind(action.explicit, "boolean")} as explicit, {p.bind(action.priority, "integer")} as priority,
        {p.bind(action.frequency_cap_per_week, "integer")} as frequency_cap_per_week,
        {p.bind(action.cap_key, "varchar")} as cap_key, {p.bind(action.cap_group, "varchar")} as cap_group,
        {score} as score, b.{ident(action.propensity)} as propensity, b.recommendation_affinity,
        {reason} as reason
    from __nba_base as b
    where {where}"""


def build_base(con, catalogue: Catalogue) -> None:
    """One row per customer (no erasure request) with everything a trigger, condition or score reads."""
    actions = catalogue.batch_actions
    features = sorted({t["feature"] for a in actions for t in (a.trigger, *a.conditions) if t.get("kind") == "feature"})
    events = {a.trigger["event"] for a in actions if a.trigger["kind"] == "event"}
    events |= {a.trigger["not_followed_by"] for a in actions if a.trigger["kind"] == "event"} - {None}
    hours = max([a.trigger["within_hours"] for a in actions if a.trigger["kind"] == "event"] or [0])
    flags = sorted({a.trigger["segment"] for a in actions if a.trigger["kind"] == "segment"})
    uses_cart = any(c["kind"] == "cart" for a in actions for c in a.conditions)
    cart = cart_sql(f"cast({AS_OF} as timestamp)") if uses_cart else "select null as customer_key where false"
    con.execute(
        f"""
        create or replace temp table __nba_base as
        with cart as (
            select customer_key, count(*) as cart_items from ({cart}) group by customer_key
        ),
        affinity as (
            select customer_key, percent_rank() over (order by avg(score)) as recommendation_affinity
            from ml.recommendation_candidates
            where rank <= 3 and source = 'personalised'
            group by customer_key
        )
        select
            c.customer_key,
            {AS_OF} as as_of_date,
            cast({AS_OF} as timestamp) as as_of_ts,
            r.rfm_segment,
            {"".join(f"s.{ident('in_' + name)}, " for name in flags)}
            {"".join(f"f.{ident(name)}, " for name in features)}
            coalesce(k.cart_items, 0) as cart_items,
            p.purchase_propensity_30d,
            p.churn_risk_30d,
            a.recommendation_affinity,
            {", ".join(f"{sql} as {ident('reaches_' + channel)}" for channel, (sql, _) in REACH.items())}
        from audiences.active_customers as c
        left join marts.customer_rfm as r on r.customer_key = c.customer_key
        left join marts.customer_rule_segments as s on s.customer_key = c.customer_key
        left join marts.customer_features as f on f.customer_key = c.customer_key
        left join ml.propensity_scores as p on p.customer_key = c.customer_key
        left join affinity as a on a.customer_key = c.customer_key
        left join cart as k on k.customer_key = c.customer_key
    """,
        CART_PARAMS if uses_cart else None,
    )
    # the clickstream an event trigger reads: its event types, inside the longest trigger window
    con.execute(
        f"""
        create or replace temp table __nba_events as
        select customer_key, event_type, event_at
        from marts.fct_events
        where customer_key is not null and event_type in (select unnest($events::varchar[]))
          and event_at >= cast({AS_OF} as timestamp) - to_hours(cast($hours as bigint))
          and event_at < cast({AS_OF} as timestamp)
        """,
        {"events": sorted(events) or [""], "hours": hours},
    )


def build_eligible(con, catalogue: Catalogue) -> None:
    """__nba_eligible: every eligible (customer, action), with whether the customer can be reached on
    the action's channel; decisioning.unreachable: per channel the customers who cannot be, and how
    many of them an action was eligible for (no decision is made for them on that channel)."""
    p = Params()
    # realtime actions are the trigger worker's (tessera/realtime/triggers.py): never decided here
    eligible = "\n    union all\n".join(eligible_sql(a, catalogue, p) for a in catalogue.batch_actions)
    reaches = " ".join(f"when {p.bind(channel)} then b.{ident('reaches_' + channel)}" for channel in REACH)
    con.execute(
        f"""
        create or replace temp table __nba_eligible as
        select e.*, coalesce(case e.channel {reaches} end, false) as reachable
        from ({eligible}
        ) as e
        inner join __nba_base as b on b.customer_key = e.customer_key
        """,
        p,
    )
    channels = sorted({a.channel for a in catalogue.batch_actions})
    # what each action's sends count against (Action.cap_key): realtime actions' sends included
    keys = catalogue.cap_keys()
    con.execute(
        "create or replace temp table __nba_cap_keys as "
        "select unnest($actions::varchar[]) as action_id, unnest($keys::varchar[]) as cap_key",
        {"actions": list(keys), "keys": list(keys.values())},
    )
    con.execute(UNREACHABLE_DDL)
    for channel in channels:
        con.execute(
            f"""
            insert into decisioning.unreachable
            select ?, ?, count(*),
                count(*) filter (where b.customer_key in (
                    select customer_key from __nba_eligible where channel = ? and not reachable))
            from __nba_base as b
            where not coalesce(b.{ident("reaches_" + channel)}, false)
            """,
            [channel, REACH[channel][1], channel],
        )


def decisions_sql(catalogue: Catalogue, holdout_share: float) -> str:
    """The decisions, from __nba_eligible (build_eligible) of the customers reachable on each channel."""
    holdout = holdout_group_sql("'nba:' || r.action_id", "r.customer_key", holdout_share)
    return f"""
    with eligible as (
        select * exclude (reachable) from __nba_eligible where reachable
    ),
    sent as (
        select s.customer_key, g.cap_key, count(*) as sent_last_7_days
        from (
            select customer_key, action_id from decisioning.sends
            where decided_on >= {AS_OF} - interval '7 days' and decided_on < {AS_OF}
            union all
            -- the trigger worker sends between daily runs (and in a demo after the data's last day):
            -- each of its sends from the window's start on counts
            select customer_key, action_id from decisioning.realtime_sends
            where decided_on >= {AS_OF} - interval '7 days'
        ) as s
        inner join __nba_cap_keys as g on g.action_id = s.action_id
        group by s.customer_key, g.cap_key
    ),
    capped as (
        select e.*, coalesce(s.sent_last_7_days, 0) as sent_last_7_days,
            coalesce(s.sent_last_7_days, 0) >= e.frequency_cap_per_week as is_capped
        from eligible as e
        left join sent as s on s.customer_key = e.customer_key and s.cap_key = e.cap_key
    ),
    capped_list as (
        select customer_key, channel,
            string_agg(action_id || ' (' || sent_last_7_days || ' sent in 7 days'
                       || coalesce(' in cap group ' || cap_group, '') || ', cap ' || frequency_cap_per_week || ')',
                       ', ' order by action_id) as capped_actions
        from capped
        where is_capped
        group by customer_key, channel
    ),
    ranked as (
        select c.*, l.capped_actions,
            row_number() over (
                partition by c.customer_key, c.channel
                order by c.is_capped, c.explicit desc, case when c.explicit then c.priority end desc nulls last,
                    c.score desc, c.action_id
            ) as choice,
            count(*) over (partition by c.customer_key, c.channel) as eligible_actions
        from capped as c
        left join capped_list as l on l.customer_key = c.customer_key and l.channel = c.channel
    ),
    chosen as (
        select r.*, coalesce(k.granted, false) as consented, {holdout} as holdout_group,
            m.consent_channel, m.consent_purpose
        from ranked as r
        inner join ({CHANNEL_CONSENT_SQL}) as m on m.channel = r.channel
        left join marts.customer_consents as k
            on k.customer_key = r.customer_key and k.channel = m.consent_channel and k.purpose = m.consent_purpose
        where r.choice = 1
    )
    select
        customer_key,
        channel,
        action_id,
        case
            when is_capped then 'capped'
            when not consented then 'no_consent'
            when holdout_group = 'control' then 'holdout'
            else 'send'
        end as decision,
        case when explicit then 'explicit_rule' else 'weighted_score' end as decided_by,
        priority,
        score,
        propensity,
        recommendation_affinity,
        holdout_group,
        eligible_actions,
        reason
            || case when capped_actions is not null then '; skipped at its frequency cap: ' || capped_actions else '' end
            || case
                when is_capped then '; not sent: every eligible action is at its frequency cap'
                when not consented then '; not sent: no ' || consent_channel || ' ' || consent_purpose || ' consent'
                when holdout_group = 'control' then '; not sent: control group of campaign nba:' || action_id
                else ''
            end as reason,
        as_of_date as decided_on,
        -- stable across re-runs; from the published key, so it reveals nothing of the internal one
        case when not is_capped and consented and holdout_group = 'treatment'
            then md5(customer_pkey(customer_key) || ':' || action_id || ':' || cast(as_of_date as varchar)) end as message_id
    from chosen
    """


def decide(con, catalogue: Catalogue, posteriors: dict[str, bandit.Posterior], state_version: int, seed: int,
           holdout_share: float) -> dict:  # fmt: skip
    """Build decisioning.decisions (customer_pkey() must be installed on `con`, tessera/privacy/pseudonym.py);
    returns each action's realised variant counts."""
    con.execute("create schema if not exists decisioning")
    con.execute(SENDS_DDL)
    con.execute(REALTIME_SENDS_DDL)
    build_base(con, catalogue)
    build_eligible(con, catalogue)
    con.execute(f"create or replace temp table __nba_decisions as {decisions_sql(catalogue, holdout_share)}")
    keys, actions, variants, why = [], [], [], []
    shares: dict[str, dict[str, int]] = {}
    for action in catalogue.batch_actions:
        posterior = posteriors[action.id]
        names = np.asarray([v.id for v in action.variants], dtype=object)
        # one uniform per message and variant, hashed from the message id: a message keeps its
        # draws however many other customers are decided alongside it
        p = Params(action_id=action.id)
        uniforms = ", ".join(
            # typed: an untyped parameter would make the modulo of md5_number's UHUGEINT a DOUBLE one
            f"cast(md5_number(message_id || {p.bind(f':{int(seed)}:{int(state_version)}:{k}')}) % cast($buckets as uhugeint)"
            f" as double) / cast($buckets as bigint) as u{k}"
            for k in range(len(names))
        )
        p["buckets"] = bandit.UNIFORM_BUCKETS
        rows = con.execute(
            f"select customer_key, {uniforms} from __nba_decisions "
            "where action_id = $action_id and decision = 'send' order by customer_key",
            p,
        ).fetchnumpy()
        customers = list(rows["customer_key"])
        u = np.column_stack([rows[f"u{k}"] for k in range(len(names))]) if customers else np.zeros((0, len(names)))
        picks = bandit.assign(posterior, u)
        keys += customers
        actions += [action.id] * len(customers)
        variants += list(names[picks])
        # the posterior means behind the draw, for the reason
        means = ", ".join(f"{v} {m:.3f}" for v, m in zip(posterior.variants, posterior.mean, strict=True))
        why += [f"; variant by Thompson sampling (bandit state v{state_version}; posterior means {means})"] * len(
            customers
        )
        shares[action.id] = {v: int(n) for v, n in zip(names, np.bincount(picks, minlength=len(names)), strict=True)}
    assigned = pa.table({"customer_key": keys, "action_id": actions, "variant_id": variants, "variant_reason": why},
                        schema=pa.schema([("customer_key", pa.string()), ("action_id", pa.string()),
                                          ("variant_id", pa.string()), ("variant_reason", pa.string())]))  # fmt: skip
    con.register("__nba_variants", assigned)
    try:
        con.execute(
            """
            create or replace table decisioning.decisions as
            select d.customer_key, d.channel, d.action_id, v.variant_id, d.decision, d.decided_by, d.priority,
                d.score, d.holdout_group, d.eligible_actions, d.reason || coalesce(v.variant_reason, '') as reason,
                d.decided_on, cast($state_version as integer) as bandit_state_version, d.message_id,
                d.propensity, d.recommendation_affinity
            from __nba_decisions as d
            left join __nba_variants as v on v.customer_key = d.customer_key and v.action_id = d.action_id
                and d.decision = 'send'
            order by d.customer_key, d.channel
            """,
            {"state_version": int(state_version)},
        )
    finally:
        con.unregister("__nba_variants")
    return shares
