"""What is published: each table in the DuckDB `publish` schema (also a versioned snapshot), its
validations, its exports and the upkeep after its swap. The SQL is in tessera/publish/sql/; the
inputs it reads beyond the marts, ML and decisioning tables are the dbt models of
dbt_project/models/audiences (active_customers: the erasure filter; consented_customers: consent).
"""

from __future__ import annotations

from tessera.decisioning.catalogue import CHANNEL_CONSENT_SQL
from tessera.publish.outputs import Published, validation
from tessera.publish.popular import POPULAR_PRODUCTS_SQL
from tessera.publish.queries import load, statements
from tessera.publish.snapshots import Export
from tessera.publish.uplift import uplift_sql

# Segment membership history and campaign assignments, kept after each customer_segments swap;
# the outbox records what it sent after each campaign_outbox swap (the scripts say how).
SEGMENT_HISTORY = statements("segment_history")
CAMPAIGN_ASSIGNMENTS = statements("campaign_assignments")
RECORD_SENDS = statements("record_sends")

SEGMENT_KINDS = ("rfm", "rule")


def email_audience(kind: str) -> Export:
    """The one export that carries contact details (email, first name), because an email tool
    needs them: a segment type's treatment group with email-marketing consent and an address,
    one CSV per segment."""
    if kind not in SEGMENT_KINDS:
        raise ValueError(f"a segment type is one of {SEGMENT_KINDS}, got {kind!r}")
    return Export(
        f"email_audience_{kind}",
        f"Customers of each {kind} segment to email: treatment group, email-marketing consent, with an address.",
        load("exports/email_audience").format(kind=kind, table="{table}"),
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
    load("exports/recommendations"),
    "jsonl",
    consent=("web", "personalization"),
)

# What a storefront shows a customer it does not know (the serving API's fallback, tessera/publish/popular.py).
POPULAR_PRODUCTS = Export(
    "popular_products",
    "Active products ranked by distinct buyers, at most max_per_category per category (the recommender's cap).",
    load("exports/popular_products").format(popular_products=POPULAR_PRODUCTS_SQL, table="{table}"),
    "jsonl",
)

MESSAGE_BODIES = Export(
    "message_bodies",
    "The rendered body of every message in the outbox (HTML-escaped HTML or JSON), by message_id; body_ref is its sha256.",
    load("exports/message_bodies"),
    "jsonl",
    pii=("body",),  # a greeting by first name; customer_pkey lets an erasure remove it (tessera/privacy/erasure.py)
)

# what the serving API knows of the catalogue: a product outside it is unknown (404), one in it
# without a list gets an empty one (tessera/serving.py)
PRODUCT_CATALOGUE = Export(
    "product_catalogue",
    "Every product id of dim_products with is_active: the products the lists per product know.",
    load("exports/product_catalogue"),
    "jsonl",
)

# the serving API's lookup by the ids a shop knows (GET /v1/lookup, tessera/serving.py): salted hashes
# of CRM ids, cookies and declared ids to customer_pkey; an erasure rewrites it as every file keyed
# by customer_pkey, and its residue check compares id_hash with the suppression list
CUSTOMER_IDENTIFIERS = Export(
    "customer_identifiers",
    "One row per id a storefront knows of each published customer (CRM customer_id, anonymous_id, declared "
    "ids by their type): id_type, id_hash = sha256(salt:id), customer_pkey. No id itself.",
    load("exports/customer_identifiers"),
    "csv",
)

EVERY_ACTIVE_CUSTOMER = validation(
    "every_active_customer_present", "Every customer in dim_customers without an erasure request has a row."
)

DECISIONING = (
    Published(
        "next_best_actions",
        "For each customer and channel with an eligible action: the chosen action and, when sent, its variant; "
        "decision (send, holdout, no_consent, capped), decided_by (explicit_rule or weighted_score), score, "
        "holdout group and the reason in words (docs/decisioning.md).",
        load("next_best_actions"),
        (
            validation("every_decision_has_a_reason", "Every decision records why it was made."),
            validation("one_decision_per_customer_and_channel", "At most one action per customer and channel."),
            validation(
                "sends_have_consent_and_are_in_treatment",
                "A 'send' has the channel's consent (marts.customer_consents) and is in the treatment group of "
                "campaign `nba:<action>`, both recomputed here (tessera/publish/holdout.py); only sends have a variant and "
                "a message id.",
                channel_consents=CHANNEL_CONSENT_SQL,
            ),
        ),
        empty_when="no customer is eligible today for any action of the catalogue (config/actions.yml)",
    ),
    Published(
        "campaign_outbox",
        "One row per message to send: channel, pseudonymous customer key, action, variant, subject "
        "(plain text, one line) and body_ref, the sha256 of the rendered body, which is in the snapshot's "
        "message_bodies export by message_id. Only customers with the channel's consent and in the treatment group.",
        load("campaign_outbox").format(channel_consents=CHANNEL_CONSENT_SQL),
        (
            validation(
                "every_rendered_message_published",
                "Every rendered message passed the consent, holdout and erasure filters: none was dropped "
                "here, which would mean a decision to send broke one of them.",
            ),
            validation("every_send_rendered", "Every decision to send has its message in the outbox."),
            validation(
                "no_message_to_the_holdout",
                "No message goes to a customer in the control group of its campaign `nba:<action>`, recomputed "
                "here from the customer key (tessera/publish/holdout.py).",
            ),
            validation("every_body_matches_its_ref", "Every message's stored body hashes to its body_ref."),
        ),
        after_swap=RECORD_SENDS,
        exports=(MESSAGE_BODIES,),
        empty_when="no decision to send: every decision is a holdout, lacks the channel's consent or is capped",
    ),
)

PUBLISHED = (
    Published(
        "customer_recommendations",
        "Top N products per customer from the champion recommender (its registry version and MLflow "
        "run on every row); active products only, at most max_per_category per category; source says "
        "whether a list is personalised, ranked from features (no history) or popular (no usable "
        "features, or no personalisation consent).",
        load("customer_recommendations"),
        exports=(RECOMMENDATION_FEED, POPULAR_PRODUCTS),
        empty_when="no active merchandise product to recommend (dim_products)",
    ),
    Published(
        "customer_segments",
        "RFM segment per customer (docs/rfm.md) with its R, F and M scores, the behavioural K-Means "
        "cluster with its description, and the winning rule-based segment (all rule flags are in "
        "marts.customer_rule_segments). rfm_holdout_group / rule_holdout_group: the customer's group "
        "(control or treatment) in a campaign on that segment, a deterministic holdout_share in control.",
        load("customer_segments"),
        (
            EVERY_ACTIVE_CUSTOMER,
            validation(
                "segment_sizes_do_not_collapse",
                "No RFM segment that had at least 20 members in the last published version shrinks below half of it.",
                compares_with_published=True,
            ),
        ),
        after_swap=SEGMENT_HISTORY + CAMPAIGN_ASSIGNMENTS,
        exports=(*(email_audience(kind) for kind in SEGMENT_KINDS), CUSTOMER_IDENTIFIERS),
    ),
    Published(
        "customer_scores",
        "RFM values, purchase propensity (next 30 days) and churn risk per customer, with percentiles.",
        load("customer_scores"),
        (
            EVERY_ACTIVE_CUSTOMER,
            validation(
                "scores_within_unit_interval",
                "Purchase propensity and churn risk lie in [0, 1]; every customer has a purchase propensity "
                "(none has one when the purchase model was skipped on thin data: no purchase_model_run_id).",
            ),
        ),
    ),
    Published(
        "campaign_uplift",
        "Per campaign (a segment on the day its audience was published) whose window has ended: conversion "
        "and revenue per customer of treatment against control, intention-to-treat, with confidence "
        "intervals (tessera/publish/uplift.py, docs/segments_and_scores.md).",
        uplift_sql(load("uplift_assignments"), load("uplift_orders")),
        (
            validation(
                "uplift_intervals_hold_their_estimates",
                "Each interval contains its estimate, conversions lie in [0, 1] and both groups have customers.",
            ),
        ),
        empty_when=(
            "no campaign has ended inside the data: a campaign is reported once TESSERA_UPLIFT_WINDOW_DAYS "
            "after its audience was published lie before the latest order, with two customers in each group"
        ),
    ),
    Published(
        "product_recommendations",
        "Lists per product (ml/product_lists.py): bought_together, viewed_together and similar, each "
        "the top N active products ranked 1..n with the score and its support (baskets in common, or "
        "name tokens in common for similar), with the recommended product's name and category.",
        load("product_recommendations"),
        (
            validation(
                "product_lists_hold_their_rules",
                "No list names its own product or an inactive or unknown product; ranks run 1..n per "
                "product and list; list_name is bought_together, viewed_together or similar.",
            ),
        ),
        exports=(PRODUCT_CATALOGUE,),
        empty_when=(
            "no product shares min_support baskets (orders or sessions) with another, and none has a "
            "similar active product in its category (dim_products)"
        ),
        keyed_by_customer=False,
    ),
    *DECISIONING,
)
