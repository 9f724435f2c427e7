"""Published outputs: tables in the DuckDB `publish` schema, each also a versioned snapshot.

Publishing is a swap: the new table is built beside the old one as publish.<name>__next, its
checks run on it (the SQL validations below and the Great Expectations suite
expectations/publish_<name>.json, check gx_publish_<name>). Only if every check passes is it
written as a new snapshot version (Parquet, exports and a manifest, tessera/publish/snapshots.py), swapped
in for the published table (one transaction), and made the snapshot's `current` version. A failed
check or step leaves the last good version in place everywhere. Versions older than
TESSERA_PUBLISH_RETENTION_DAYS are removed. Customers who asked for erasure are never published.
"""

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from orchestration.dbt import model_key
from orchestration.decisioning import DECISIONS_KEY, MESSAGES_KEY
from orchestration.metadata import run_metadata, table_metadata
from orchestration.ml import CLUSTERS_KEY, PROPENSITY_KEY, RECOMMENDER_KEY
from orchestration.privacy import ERASURE_KEY, run_in_progress
from orchestration.quality import gated_marts_upstream, run_suite, suite_metadata
from orchestration.resources import DUCKDB_POOL, TesseraResource
from tessera import markdown
from tessera.privacy import pseudonym
from tessera.publish import snapshots
from tessera.db import table_exists, transaction
from tessera.faults import crash_point
from tessera.decisioning.catalogue import CHANNEL_CONSENT_SQL
from tessera.publish.holdout import holdout_group_sql
from tessera.publish.popular import POPULAR_PRODUCTS_SQL
from tessera.quality.suites import record_pass
from tessera.publish.snapshots import Export
from tessera.publish.uplift import uplift_sql

PUBLISH_GROUP = "publish"
ACTIVE_CUSTOMERS = "select customer_key from marts.dim_customers where not is_erasure_requested"


@dataclass(frozen=True)
class Validation:
    """A blocking check on the candidate table `{table}`: `sql` counts violations (0 = pass)."""

    name: str
    description: str
    sql: str
    # compares with the currently published table: passes on the first publish
    compares_with_published: bool = False


@dataclass(frozen=True)
class Published:
    name: str
    description: str
    # may name the parameters of sql_parameters() as {name}
    sql: str
    deps: tuple[dg.AssetKey, ...]
    validations: tuple[Validation, ...] = ()
    # SQL run in the swap transaction after the new version is in place (e.g. history upkeep)
    after_swap: tuple[str, ...] = ()
    # files written into each snapshot version beside the Parquet (docs/publishing.md)
    exports: tuple[Export, ...] = ()


# Segment membership history: one row per customer, segment type and segment with the as-of
# dates it held from and until (valid_to NULL = still a member). Dates are data dates, so
# re-publishing unchanged data changes nothing.
SEGMENT_HISTORY = (
    """
    create table if not exists publish.customer_segment_history (
        customer_pkey varchar, segment_type varchar, segment varchar, valid_from date, valid_to date
    )
    """,
    """
    create or replace temp table __segment_memberships as
    select customer_pkey, 'rfm' as segment_type, rfm_segment as segment, cast(as_of_date as date) as as_of_date
    from publish.customer_segments
    union all
    select customer_pkey, 'cluster', cast(cluster_id as varchar) || ': ' || cluster_description, cast(as_of_date as date)
    from publish.customer_segments where cluster_id is not null
    union all
    select customer_pkey, 'rule', rule_segment, cast(as_of_date as date)
    from publish.customer_segments where rule_segment is not null
    """,
    """
    update publish.customer_segment_history as h
    set valid_to = (select max(as_of_date) from __segment_memberships)
    where h.valid_to is null
      and not exists (
          select 1 from __segment_memberships as m
          where m.customer_pkey = h.customer_pkey and m.segment_type = h.segment_type and m.segment = h.segment
      )
    """,
    """
    insert into publish.customer_segment_history (customer_pkey, segment_type, segment, valid_from, valid_to)
    select m.customer_pkey, m.segment_type, m.segment, m.as_of_date, null
    from __segment_memberships as m
    where not exists (
        select 1 from publish.customer_segment_history as h
        where h.valid_to is null
          and h.customer_pkey = m.customer_pkey and h.segment_type = m.segment_type and h.segment = m.segment
    )
    """,
)


def consented(channel: str, purpose: str, customer_pkey: str) -> str:
    """SQL: the customer with this published key has granted `purpose` on `channel`
    (marts.customer_consents, docs/privacy.md)."""
    return f"""exists (
        select 1 from marts.customer_consents as k
        where customer_pkey(k.customer_key) = {customer_pkey}
          and k.channel = '{channel}' and k.purpose = '{purpose}' and k.granted
    )"""


# Email audiences: the one export that carries contact details (email, first name), because an
# email tool needs them. Treatment group only (the control group is held out of the campaign),
# with email-marketing consent and an address. One CSV per segment.
def email_audience(kind: str) -> Export:
    return Export(
        f"email_audience_{kind}",
        f"Customers of each {kind} segment to email: treatment group, email-marketing consent, with an address.",
        f"""
        select s.customer_pkey, c.email, c.first_name, s.{kind}_segment as segment, s.{kind}_holdout_group as holdout_group
        from {{table}} as s
        inner join marts.dim_customers as c on customer_pkey(c.customer_key) = s.customer_pkey
        where s.{kind}_segment is not null
          and s.{kind}_holdout_group = 'treatment'
          and {consented("email", "marketing", "s.customer_pkey")}
          and c.email is not null
        order by s.customer_pkey
        """,
        "csv",
        per="segment",
        pii=("email", "first_name"),
        consent=("email", "marketing"),
    )


# The personalised feed: customers who have not consented to personalisation are left out (the
# serving API gives them the popular products instead).
RECOMMENDATION_FEED = Export(
    "recommendations",
    "One JSON object per customer with web-personalisation consent: source, model version and the ranked items.",
    f"""
    select
        customer_pkey,
        any_value(source) as source,
        any_value(model_version) as model_version,
        -- list_sort orders the items by rank, their first field (unique per customer): the same list
        -- as list(... order by rank), whose per-group sort took 11.1 s against 6.1 s at 1M customers
        list_sort(list(
            struct_pack(rank := rank, product_id := product_id, product_name := product_name, category := category, score := score)
        )) as items
    from {{table}} as r
    where {consented("web", "personalization", "r.customer_pkey")}
    group by customer_pkey
    order by customer_pkey
    """,
    "jsonl",
    consent=("web", "personalization"),
)

# What a storefront shows a customer it does not know (the serving API's fallback, tessera/publish/popular.py).
POPULAR_PRODUCTS = Export(
    "popular_products",
    "Active products ranked by distinct buyers, at most max_per_category per category (the recommender's cap).",
    f"select * from ({POPULAR_PRODUCTS_SQL}) order by rank limit 100",
    "jsonl",
)


# Campaign assignments: who was in treatment or control of each segment's campaign on the day its
# audience was published, kept internally with customer_key (never published) so the uplift can
# follow their orders. Re-publishing the same day adds nothing.
CAMPAIGN_ASSIGNMENTS = (
    "create schema if not exists campaigns",
    """
    create table if not exists campaigns.assignments (
        campaign varchar, customer_key varchar, holdout_group varchar, assigned_on date
    )
    """,
    """
    insert into campaigns.assignments
    select n.campaign, n.customer_key, n.holdout_group, n.assigned_on
    from (
        select 'rfm:' || s.rfm_segment as campaign, c.customer_key, s.rfm_holdout_group as holdout_group,
            cast(s.as_of_date as date) as assigned_on
        from publish.customer_segments as s
        inner join marts.dim_customers as c on customer_pkey(c.customer_key) = s.customer_pkey
        union all
        select 'rule:' || s.rule_segment, c.customer_key, s.rule_holdout_group, cast(s.as_of_date as date)
        from publish.customer_segments as s
        inner join marts.dim_customers as c on customer_pkey(c.customer_key) = s.customer_pkey
        where s.rule_segment is not null
    ) as n
    where not exists (
        select 1 from campaigns.assignments as a
        where a.campaign = n.campaign and a.customer_key = n.customer_key and a.assigned_on = n.assigned_on
    )
    """,
)


EVERY_ACTIVE_CUSTOMER = Validation(
    "every_active_customer_present",
    "Every customer in dim_customers without an erasure request has a row.",
    f"select count(*) from ({ACTIVE_CUSTOMERS}) a where customer_pkey(a.customer_key) not in (select customer_pkey from {{table}})",
)

# The outbox records what it sent: decisioning.sends feeds frequency caps and the bandit. A re-publish
# on the same decision day replaces that day's sends.
RECORD_SENDS = (
    """
    create table if not exists decisioning.sends (
        message_id varchar, customer_key varchar, action_id varchar, variant_id varchar, channel varchar, decided_on date
    )
    """,
    "delete from decisioning.sends where decided_on in (select distinct decided_on from decisioning.decisions)",
    """
    insert into decisioning.sends
    select m.message_id, m.customer_key, m.action_id, m.variant_id, m.channel, m.decided_on
    from decisioning.messages as m
    where m.message_id in (select message_id from publish.campaign_outbox)
    """,
)

MESSAGE_BODIES = Export(
    "message_bodies",
    "The rendered body of every message in the outbox (HTML-escaped HTML or JSON), by message_id; body_ref is its sha256.",
    """
    select t.message_id, t.customer_pkey, t.body_ref, t.content_type, m.body
    from {table} as t
    inner join decisioning.messages as m on m.message_id = t.message_id
    order by t.message_id
    """,
    "jsonl",
    pii=("body",),  # a greeting by first name; customer_pkey lets an erasure remove it (tessera/privacy/erasure.py)
)

DECISIONING = (
    Published(
        "next_best_actions",
        "For each customer and channel with an eligible action: the chosen action and, when sent, its variant; "
        "decision (send, holdout, no_consent, capped), decided_by (explicit_rule or weighted_score), score, "
        "holdout group and the reason in words (docs/decisioning.md).",
        """
        select customer_pkey(d.customer_key) as customer_pkey, d.channel, d.action_id, d.variant_id, d.decision,
            d.decided_by, d.priority, d.score, d.holdout_group, d.eligible_actions, d.reason, d.message_id,
            d.bandit_state_version, d.decided_on
        from decisioning.decisions as d
        inner join marts.dim_customers as c on c.customer_key = d.customer_key and not c.is_erasure_requested
        order by customer_pkey, d.channel
        """,
        (DECISIONS_KEY, model_key("dim_customers"), model_key("customer_consents")),
        (
            Validation(
                "every_decision_has_a_reason",
                "Every decision records why it was made.",
                "select count(*) from {table} where reason is null or length(trim(reason)) = 0",
            ),
            Validation(
                "one_decision_per_customer_and_channel",
                "At most one action per customer and channel.",
                "select count(*) from (select customer_pkey, channel from {table} group by all having count(*) > 1)",
            ),
            Validation(
                "sends_have_consent_and_are_in_treatment",
                "A 'send' has the channel's consent (marts.customer_consents) and is in the treatment group of "
                "campaign nba:<action>, both recomputed here (tessera/publish/holdout.py); only sends have a variant and "
                "a message id.",
                f"""
                select count(*) from {{table}} as t
                inner join ({CHANNEL_CONSENT_SQL}) as m on m.channel = t.channel
                inner join marts.dim_customers as c on customer_pkey(c.customer_key) = t.customer_pkey
                left join marts.customer_consents as k
                    on k.customer_key = c.customer_key and k.channel = m.consent_channel and k.purpose = m.consent_purpose
                where (t.decision = 'send' and (not coalesce(k.granted, false) or {{nba_holdout}} <> 'treatment'
                        or t.variant_id is null or t.message_id is null))
                   or (t.decision <> 'send' and (t.variant_id is not null or t.message_id is not null))
                """,
            ),
        ),
    ),
    Published(
        "campaign_outbox",
        "One row per message to send: channel, pseudonymous customer key, action, variant, subject "
        "(plain text, one line) and body_ref, the sha256 of the rendered body, which is in the snapshot's "
        "message_bodies export by message_id. Only customers with the channel's consent and in the treatment group.",
        f"""
        select m.message_id, customer_pkey(m.customer_key) as customer_pkey, m.channel, m.action_id, m.variant_id,
            m.subject, m.body_ref, m.content_type, m.decided_on
        from decisioning.messages as m
        inner join decisioning.decisions as d
            on d.message_id = m.message_id and d.decision = 'send' and d.holdout_group = 'treatment'
        inner join marts.dim_customers as c on c.customer_key = m.customer_key and not c.is_erasure_requested
        inner join ({CHANNEL_CONSENT_SQL}) as x on x.channel = m.channel
        inner join marts.customer_consents as k
            on k.customer_key = m.customer_key and k.channel = x.consent_channel and k.purpose = x.consent_purpose
            and k.granted
        order by m.message_id
        """,
        (MESSAGES_KEY, DECISIONS_KEY, model_key("dim_customers"), model_key("customer_consents")),
        (
            Validation(
                "every_rendered_message_published",
                "Every rendered message passed the consent, holdout and erasure filters: none was dropped "
                "here, which would mean a decision to send broke one of them.",
                "select count(*) from decisioning.messages where message_id not in (select message_id from {table})",
            ),
            Validation(
                "every_send_rendered",
                "Every decision to send has its message in the outbox.",
                "select count(*) from decisioning.decisions where decision = 'send' "
                "and message_id not in (select message_id from {table})",
            ),
            Validation(
                "no_message_to_the_holdout",
                "No message goes to a customer in the control group of its campaign nba:<action>, recomputed "
                "here from the customer key (tessera/publish/holdout.py).",
                """
                select count(*) from {table} as t
                inner join marts.dim_customers as c on customer_pkey(c.customer_key) = t.customer_pkey
                where {nba_holdout} <> 'treatment'
                """,
            ),
            Validation(
                "every_body_matches_its_ref",
                "Every message's stored body hashes to its body_ref.",
                """
                select count(*) from {table} as t
                inner join decisioning.messages as m on m.message_id = t.message_id
                where t.body_ref <> 'sha256:' || sha256(m.body)
                """,
            ),
        ),
        after_swap=RECORD_SENDS,
        exports=(MESSAGE_BODIES,),
    ),
)

PUBLISHED = (
    Published(
        "customer_recommendations",
        "Top N products per customer from the champion recommender (its registry version and MLflow "
        "run on every row); active products only, at most max_per_category per category; source says "
        "whether a list is personalised, ranked from features (no history) or popular (no usable "
        "features, or no personalisation consent).",
        """
        select customer_pkey(r.customer_key) as customer_pkey, r.rank, r.product_id, p.product_name, p.category, r.score, r.source,
            r.model_run_id, r.model_version
        from ml.recommendation_candidates as r
        inner join marts.dim_customers as c on c.customer_key = r.customer_key and not c.is_erasure_requested
        inner join marts.dim_products as p on p.product_id = r.product_id and p.is_active
        order by customer_pkey, r.rank
        """,
        (RECOMMENDER_KEY, model_key("dim_customers"), model_key("dim_products"), model_key("customer_consents")),
        exports=(RECOMMENDATION_FEED, POPULAR_PRODUCTS),
    ),
    Published(
        "customer_segments",
        "RFM segment per customer (docs/rfm.md) with its R, F and M scores, the behavioural K-Means "
        "cluster with its description, and the winning rule-based segment (all rule flags are in "
        "marts.customer_rule_segments). rfm_holdout_group / rule_holdout_group: the customer's group "
        "(control or treatment) in a campaign on that segment, a deterministic holdout_share in control.",
        """
        select
            customer_pkey(s.customer_key) as customer_pkey,
            s.rfm_segment,
            s.r_score,
            s.f_score,
            s.m_score,
            k.cluster_id,
            k.cluster_description,
            k.clustering_run_id,
            r.rule_segment,
            r.rule_segment_priority,
            -- campaigns target a segment; each leaves a deterministic share of it out (tessera/publish/holdout.py)
            {rfm_holdout} as rfm_holdout_group,
            {rule_holdout} as rule_holdout_group,
            {holdout_share} as holdout_share,
            s.as_of_date
        from marts.customer_rfm as s
        inner join marts.dim_customers as c on c.customer_key = s.customer_key and not c.is_erasure_requested
        left join ml.customer_clusters as k on k.customer_key = s.customer_key
        left join marts.customer_rule_segments as r on r.customer_key = s.customer_key
        order by customer_pkey
        """,
        (
            model_key("customer_rfm"),
            model_key("dim_customers"),
            model_key("customer_rule_segments"),
            CLUSTERS_KEY,
            model_key("customer_consents"),
        ),
        (
            EVERY_ACTIVE_CUSTOMER,
            Validation(
                "segment_sizes_do_not_collapse",
                "No RFM segment that had at least 20 members in the last published version shrinks below half of it.",
                """
                select count(*) from (
                    select p.rfm_segment, count(*) as previous_size
                    from publish.customer_segments as p group by 1 having count(*) >= 20
                ) as prev
                left join (select rfm_segment, count(*) as size from {table} group by 1) as cur using (rfm_segment)
                where coalesce(cur.size, 0) < 0.5 * prev.previous_size
                """,
                compares_with_published=True,
            ),
        ),
        after_swap=SEGMENT_HISTORY + CAMPAIGN_ASSIGNMENTS,
        exports=(email_audience("rfm"), email_audience("rule")),
    ),
    Published(
        "customer_scores",
        "RFM values, purchase propensity (next 30 days) and churn risk per customer, with percentiles.",
        """
        with scores as (
            select
                customer_pkey(s.customer_key) as customer_pkey,
                s.recency_days,
                s.frequency,
                s.monetary,
                s.average_order_value,
                s.tenure_days,
                s.r_score + s.f_score + s.m_score as rfm_score,
                p.purchase_propensity_30d,
                p.churn_risk_30d,
                p.purchase_propensity_30d_run_id as purchase_model_run_id,
                p.churn_risk_30d_run_id as churn_model_run_id,
                s.as_of_date
            from marts.customer_rfm as s
            inner join marts.dim_customers as c on c.customer_key = s.customer_key and not c.is_erasure_requested
            left join ml.propensity_scores as p on p.customer_key = s.customer_key
        )
        select
            *,
            round(100 * percent_rank() over (order by purchase_propensity_30d), 1) as purchase_propensity_percentile,
            case when churn_risk_30d is not null then round(100 * percent_rank() over (
                partition by churn_risk_30d is null order by churn_risk_30d), 1) end as churn_risk_percentile
        from scores
        order by customer_pkey
        """,
        (model_key("customer_rfm"), model_key("dim_customers"), PROPENSITY_KEY),
        (
            EVERY_ACTIVE_CUSTOMER,
            Validation(
                "scores_within_unit_interval",
                "Purchase propensity and churn risk lie in [0, 1]; every customer has a purchase propensity "
                "(none has one when the purchase model was skipped on thin data: no purchase_model_run_id).",
                """
                select count(*) from {table}
                where (purchase_propensity_30d is null and (select count(purchase_model_run_id) from {table}) > 0)
                   or purchase_propensity_30d not between 0 and 1
                   or (churn_risk_30d is not null and churn_risk_30d not between 0 and 1)
                """,
            ),
        ),
    ),
    Published(
        "campaign_uplift",
        "Per campaign (a segment on the day its audience was published) whose window has ended: conversion "
        "and revenue per customer of treatment against control, intention-to-treat, with confidence "
        "intervals (tessera/publish/uplift.py, docs/segments_and_scores.md).",
        "{campaign_uplift}",
        (dg.AssetKey(["publish", "customer_segments"]), model_key("fct_orders")),
        (
            Validation(
                "uplift_intervals_hold_their_estimates",
                "Each interval contains its estimate, conversions lie in [0, 1] and both groups have customers.",
                """
                select count(*) from {table}
                where not (conversion_uplift between conversion_uplift_low and conversion_uplift_high)
                   or not (revenue_uplift_per_customer between revenue_uplift_low and revenue_uplift_high)
                   or treatment_conversion not between 0 and 1 or control_conversion not between 0 and 1
                   or treatment_customers < 2 or control_customers < 2
                """,
            ),
        ),
    ),
) + DECISIONING


def sql_parameters(settings) -> dict[str, str]:
    """What a published table's SQL may refer to as {name}."""
    return {
        "rfm_holdout": holdout_group_sql("'rfm:' || s.rfm_segment", "s.customer_key", settings.holdout_share),
        "rule_holdout": holdout_group_sql("'rule:' || r.rule_segment", "s.customer_key", settings.holdout_share),
        "holdout_share": f"cast({float(settings.holdout_share)!r} as double)",
        # a next-best action's campaign group, recomputed by the validations (t: the candidate, c: dim_customers)
        "nba_holdout": holdout_group_sql("'nba:' || t.action_id", "c.customer_key", settings.holdout_share),
        "campaign_uplift": uplift_sql(
            "select campaign, customer_key, holdout_group, assigned_on from campaigns.assignments",
            "select customer_key, ordered_at, net_revenue_base as revenue from marts.fct_orders where status = 'completed'",
            settings.uplift_window_days,
            settings.uplift_confidence,
        ),
    }


def rekey_published_tables(con, log) -> None:
    """Published tables keyed by customer_key (written before pseudonymous keys) are re-keyed in
    place: customer_key is replaced by customer_pkey, so no internal key stays published."""
    rows = con.execute(
        "select table_name from information_schema.columns where table_schema = 'publish' and column_name = 'customer_key'"
    ).fetchall()
    for (table,) in rows:
        con.execute(f"alter table publish.{table} add column if not exists customer_pkey varchar")
        con.execute(f"update publish.{table} set customer_pkey = customer_pkey(customer_key)")
        con.execute(f"alter table publish.{table} drop column customer_key")
        log.info(f"publish.{table}: customer_key replaced by customer_pkey (docs/privacy.md)")


def run_validations(con, spec: Published, candidate: str, params: dict[str, str] | None = None) -> list[tuple[Validation, int]]:
    """Each validation's violation count; `params` are what its SQL may name besides {table}."""
    results = []
    for v in spec.validations:
        if v.compares_with_published and not table_exists(con, "publish", spec.name):
            results.append((v, 0))  # first publish: nothing to compare with
            continue
        results.append((v, con.execute(v.sql.format(table=candidate, **(params or {}))).fetchall()[0][0]))
    return results


def swap_in(con, name: str, candidate: str, after_swap: tuple[str, ...] = ()) -> int:
    """Replace publish.<name> with the candidate in one transaction."""
    with transaction(con):
        con.execute(f"drop table if exists publish.{name}")
        con.execute(f"alter table {candidate} rename to {name}")
        for sql in after_swap:
            con.execute(sql)
    return con.execute(f"select count(*) from publish.{name}").fetchall()[0][0]


def publish_version(
    con, spec: Published, candidate: str, settings, run_id: str, checks: list[dict], log, release_now: bool
) -> dict:
    """Write the candidate as a new snapshot version into the run's staging directory, then swap
    it in for the DuckDB table. publish/release moves every table's staged version into place
    together; `release_now` (the run does not include publish/release, e.g. one table
    materialised from the UI) releases this table's version by itself.

    The snapshot is written first (complete or not at all) and discarded if the swap fails."""
    now = datetime.now(UTC)
    version = snapshots.new_version(now, run_id)
    staging = snapshots.staging_dir(settings.publish_dir, run_id)
    snap = snapshots.write_snapshot(
        con,
        staging,
        spec.name,
        candidate,
        version,
        published_at=now,
        run_id=run_id,
        checks=checks,
        exports=spec.exports,
        pseudonym_salt=pseudonym.salt_label(settings.pseudonym_salt),
    )
    try:
        rows = swap_in(con, spec.name, candidate, spec.after_swap)
    except BaseException:
        snapshots.discard(staging, spec.name, version)
        raise
    if release_now:
        changes = snapshots.promote_staged(settings.publish_dir, run_id)
        done = snapshots.release(
            settings.publish_dir, changes, run_id=run_id, now=now, keep_days=settings.publish_retention_days
        )
        log.info(f"publish/{spec.name}: released on its own (publish/release is not in this run)")
        if done["removed"]:
            log.info(f"publish: removed {len(done['removed'])} version(s) no release names")
    return {"rows": rows, "version": version, "snapshot": snap}


def exports_table(manifest: dict) -> str:
    rows = [f for f in manifest["files"] if f["format"] != "parquet"]
    if not rows:
        return "no exports"
    cells = [(f["path"], f["rows"], ", ".join(f["pii"]) or "none") for f in rows]
    return markdown.table(cells, ["file", "rows", "personal data"], ("left", "right", "left"))


def build_publish_asset(spec: Published) -> dg.AssetsDefinition:
    key = dg.AssetKey(["publish", spec.name])
    gx_name = f"gx_publish_{spec.name}"

    @dg.asset(
        key=key,
        # plus the gated marts upstream of its dbt inputs: a failing marts gate holds it back
        deps=list(spec.deps)
        + [ERASURE_KEY]
        + [
            k
            for k in gated_marts_upstream(d.path[-1] for d in spec.deps if d.path[0] in ("marts", "intermediate"))
            if k not in spec.deps
        ],
        group_name=PUBLISH_GROUP,
        description=spec.description,
        kinds={"python", "duckdb", "parquet", "great_expectations"},
        owners=["team:data-platform"],
        pool=DUCKDB_POOL,
        check_specs=[
            dg.AssetCheckSpec(v.name, asset=key, description=v.description, blocking=True) for v in spec.validations
        ]
        + [
            dg.AssetCheckSpec(
                gx_name,
                asset=key,
                description=f"Great Expectations suite expectations/publish_{spec.name}.json on the candidate table.",
                blocking=True,
            )
        ],
    )
    def _publish(context: dg.AssetExecutionContext, tessera: TesseraResource):
        started = time.perf_counter()
        settings = tessera.settings()
        # refuses the public demo salt outside demo mode, before anything is built
        pseudonym.check_salt(settings.pseudonym_salt, settings.mode)
        candidate = f"publish.{spec.name}__next"
        with tessera.duckdb() as con:
            pseudonym.install(con, settings.pseudonym_salt)
            con.execute("create schema if not exists publish")
            rekey_published_tables(con, context.log)
            con.execute(f"create or replace table {candidate} as {spec.sql.format(**sql_parameters(settings))}")
            results = run_validations(con, spec, candidate, sql_parameters(settings))
            # recorded as the row-count baseline only once this version is published
            suite = run_suite(
                con, settings, gx_name, candidate, f"publish_{spec.name}", context.run.run_id, record=False
            )
            gx_result = dg.AssetCheckResult(
                check_name=gx_name,
                passed=suite.success,
                severity=dg.AssetCheckSeverity.ERROR,
                description=suite.describe(),
                metadata=suite_metadata(suite),
            )
            failed = [v.name for v, n in results if n] + ([] if suite.success else [gx_name])
            if failed:
                yield gx_result
                for v, n in results:
                    yield dg.AssetCheckResult(
                        check_name=v.name,
                        passed=n == 0,
                        severity=dg.AssetCheckSeverity.ERROR,
                        metadata={"violations": n},
                    )
                con.execute(f"drop table {candidate}")
                raise dg.Failure(
                    description=f"publish/{spec.name} not swapped in: checks failed: {', '.join(failed)}; the last good version stays",
                )
            checks = [{"name": v.name, "passed": True, "violations": n} for v, n in results] + [
                {
                    "name": gx_name,
                    "passed": True,
                    "suite": f"expectations/publish_{spec.name}.json",
                    "expectations_evaluated": suite.evaluated,
                    "rows_validated": suite.rows_validated,
                }
            ]
            release_now = not release_in_run(context)
            published = publish_version(
                con, spec, candidate, settings, context.run.run_id, checks, context.log, release_now
            )
            rows = published["rows"]
            record_pass(con, gx_name, f"publish.{spec.name}", rows, context.run.run_id)
            table = table_metadata(con, f"publish.{spec.name}")
        snap = published["snapshot"]
        yield dg.MaterializeResult(
            metadata={
                **table,
                **run_metadata(started, rows),
                "snapshot_version": snap.version,
                "released": "now" if release_now else "by publish/release, with every other table",
                "exports": dg.MetadataValue.md(exports_table(snap.manifest)),
            },
            check_results=[
                dg.AssetCheckResult(check_name=v.name, passed=True, metadata={"violations": n}) for v, n in results
            ]
            + [gx_result],
        )

    return _publish


publish_assets = [build_publish_asset(spec) for spec in PUBLISHED]
RELEASE_KEY = dg.AssetKey(["publish", "release"])


@dg.asset(
    key=RELEASE_KEY,
    deps=[a.key for a in publish_assets],
    group_name=PUBLISH_GROUP,
    description=(
        "Moves every table this run published from its staging directory into place and replaces "
        "release.json in one step: readers (the API, exports) see the previous complete set or the "
        "new one, never a mix. Removes what no release names (a crashed run's leftovers, expired "
        "versions) and leftover publish.*__next tables. docs/publishing.md."
    ),
    kinds={"python", "parquet"},
    owners=["team:data-platform"],
    pool=DUCKDB_POOL,
)
def release_asset(context: dg.AssetExecutionContext, tessera: TesseraResource):
    started = time.perf_counter()
    settings = tessera.settings()
    run_id = context.run.run_id
    changes = snapshots.promote_staged(settings.publish_dir, run_id)
    crash_point("release:promoted")
    done = snapshots.release(
        settings.publish_dir, changes, run_id=run_id, keep_days=settings.publish_retention_days
    )
    stale_runs = snapshots.sweep_staging(settings.publish_dir, lambda r: run_in_progress(context.instance, r))
    with tessera.duckdb() as con:
        leftovers = drop_leftover_candidates(con)
    context.log.info(
        f"release {done['release']}: {len(changes)} table(s) moved ({', '.join(sorted(changes)) or 'none'}); "
        f"{len(done['removed'])} unnamed version(s), {len(stale_runs)} stale staging dir(s), "
        f"{len(leftovers)} leftover candidate table(s) removed"
    )
    return dg.MaterializeResult(
        metadata={
            **run_metadata(started, len(changes)),
            "release": done["release"],
            "current": dg.MetadataValue.json(done["current"]),
            "versions_removed": len(done["removed"]),
            "stale_staging_removed": len(stale_runs),
            "leftover_candidates_dropped": dg.MetadataValue.json(leftovers),
        }
    )


def release_in_run(context: dg.AssetExecutionContext) -> bool:
    """Whether publish/release runs after this step: it is in the job and in the run's selection."""
    selection = context.run.asset_selection
    in_job = RELEASE_KEY in context.job_def.asset_layer.selected_asset_keys
    return in_job and (selection is None or RELEASE_KEY in selection)


def drop_leftover_candidates(con) -> list[str]:
    """publish.<name>__next tables: a candidate lives within one publish step (which holds the
    pool, as this step does), so any that exists now was left by a killed run."""
    names = [
        r[0]
        for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'publish' and table_name like '%\\_\\_next' escape '\\'"
        ).fetchall()
    ]
    for name in names:
        con.execute(f"drop table publish.{name}")
    return names
