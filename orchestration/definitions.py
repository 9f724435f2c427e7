"""The only module workspace.yaml loads: every domain hands its assets, checks and jobs up here."""

import dagster as dg

from orchestration.automation import JOBS, SCHEDULES, SENSORS, freshness_checks
from orchestration.dbt import dbt_marts_assets, dbt_resource, dbt_staging_assets
from orchestration.decisioning import decisioning_assets
from orchestration.identity import (
    identity_cluster_size_within_limit,
    identity_evaluation,
    identity_map,
    identity_merge_rate_drift_within_limit,
)
from orchestration.ml import (
    candidates_reference_known_customers_and_active_products,
    customer_clusters,
    product_lists_hold_their_rules,
    product_recommendations,
    propensity_scores,
    recommendation_candidates,
)
from orchestration.privacy import erasure_asset
from orchestration.publish import publish_assets, release_asset
from orchestration.quality import gx_checks
from orchestration.resources import TesseraResource
from orchestration.sessions import session_index
from orchestration.sources import load_tables, source_assets

defs = dg.Definitions(
    assets=[
        *source_assets,
        *load_tables,
        dbt_staging_assets,
        identity_map,
        identity_evaluation,
        dbt_marts_assets,
        recommendation_candidates,
        propensity_scores,
        customer_clusters,
        product_recommendations,
        erasure_asset,
        *decisioning_assets,
        *publish_assets,
        session_index,
        release_asset,
    ],
    asset_checks=[
        *gx_checks,
        identity_cluster_size_within_limit,
        identity_merge_rate_drift_within_limit,
        candidates_reference_known_customers_and_active_products,
        product_lists_hold_their_rules,
        *freshness_checks,
    ],
    jobs=JOBS,
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources={"tessera": TesseraResource(), "dbt": dbt_resource},
    # Every step that opens the DuckDB file is in the `duckdb` pool, limited to one at a time
    # across runs (orchestration/resources.py), so Dagster's default multiprocess executor is safe
    # too (bench/concurrency.py --executor multiprocess); but its steps would take turns anyway,
    # and each would pay a process start (15-30 s here) while holding the pool's slot.
    executor=dg.in_process_executor,
)
