"""Asset keys and groups in one place, so a module names another stage's assets without importing
that stage's Dagster module. dbt models' keys come from the dbt project (orchestration/dbt.py
model_key)."""

import dagster as dg

IDENTITY_GROUP = "identity"
IDENTITY_MAP_KEY = dg.AssetKey(["identity", "identity_map"])
EVALUATION_KEY = dg.AssetKey(["identity", "identity_evaluation"])

ML_GROUP = "ml"
RECOMMENDER_KEY = dg.AssetKey(["ml", "recommendation_candidates"])
PROPENSITY_KEY = dg.AssetKey(["ml", "propensity_scores"])
CLUSTERS_KEY = dg.AssetKey(["ml", "customer_clusters"])
PRODUCT_LISTS_KEY = dg.AssetKey(["ml", "product_recommendations"])

PRIVACY_GROUP = "privacy"
ERASURE_KEY = dg.AssetKey(["privacy", "erasure"])

DECISIONING_GROUP = "decisioning"
BANDIT_KEY = dg.AssetKey(["decisioning", "bandit_state"])
DECISIONS_KEY = dg.AssetKey(["decisioning", "decisions"])
MESSAGES_KEY = dg.AssetKey(["decisioning", "rendered_messages"])
# what the realtime trigger worker knows of each customer (tessera/realtime/audience.py)
TRIGGER_AUDIENCE_KEY = dg.AssetKey(["decisioning", "trigger_audience"])

PUBLISH_GROUP = "publish"
RELEASE_KEY = dg.AssetKey(["publish", "release"])
# the recent web sessions' products, for session recommendations (orchestration/sessions.py)
SESSION_INDEX_KEY = dg.AssetKey(["publish", "session_index"])


def publish_key(name: str) -> dg.AssetKey:
    """publish/<name>: the asset of a published table (tessera/publish/published.py)."""
    return dg.AssetKey(["publish", name])


# The warehouse table each Python asset writes (dbt models' tables are in dbt's manifest; raw and
# publish tables are named after their key): the erasure step changes tables other assets own
# and reports their new row counts to those assets (orchestration/privacy.py).
PYTHON_TABLES = {
    IDENTITY_MAP_KEY: "identity.identity_map",
    EVALUATION_KEY: "identity.evaluation_history",
    RECOMMENDER_KEY: "ml.recommendation_candidates",
    PROPENSITY_KEY: "ml.propensity_scores",
    CLUSTERS_KEY: "ml.customer_clusters",
    PRODUCT_LISTS_KEY: "ml.product_recommendations",
    BANDIT_KEY: "decisioning.bandit_state_versions",
    DECISIONS_KEY: "decisioning.decisions",
    MESSAGES_KEY: "decisioning.messages",
    ERASURE_KEY: "privacy.erasure_log",
}
