"""ML assets: the LightFM recommender, propensity scores and behavioural clusters, each tracked in
MLflow. Each asset says when it runs and from what; how is in ml/ (modelling) and tessera/mlio/
(the ML stage's reads and writes)."""

import time
from dataclasses import fields

import dagster as dg

from ml.clustering import FIT_SAMPLE, K_MAX, K_MIN
from ml.clustering_run import cluster_and_log
from ml.product_lists import ListParams
from ml.promotion import GateRule
from ml.propensity import MAX_TRAIN_ROWS
from ml.propensity_run import PropensityRun, score_propensities
from ml.rec_lists import ListRules
from ml.rec_run import Cadence, RecommenderRun, primary_metrics, refresh_recommender
from ml.recommender import RecommenderParams
from ml.tracking import NOTE_TAG, Tracking
from orchestration.keys import CLUSTERS_KEY, ML_GROUP, PRODUCT_LISTS_KEY, PROPENSITY_KEY, RECOMMENDER_KEY
from orchestration.metadata import declared_schema, mlflow_run_metadata, run_metadata, table_metadata
from orchestration.quality import gated_deps
from orchestration.resources import DUCKDB_POOL, TesseraResource
from tessera.memory import release_unused
from tessera.mlio.product_lists import build_product_lists, list_sizes, product_list_violations, write_product_lists
from tessera.mlio.recommender import candidate_rule_violations, read_training_frames, write_candidates
from tessera.mlio.scores import read_behavioural_features, read_feature_snapshots
from tessera.mlio.tables import write_ml_table
from tessera.privacy import pseudonym
from tessera.settings import mlflow_artifact_root
from tessera.timing import Phases

PROPENSITY_EXPERIMENT = "tessera-propensity"
SEGMENTS_EXPERIMENT = "tessera-segments"


def tracking_for(
    context: dg.AssetExecutionContext, settings, experiment: str, model_name: str | None = None
) -> Tracking:
    """Where this run's models are tracked, every MLflow run tagged with the Dagster run: its id,
    its address in the Dagster UI (TESSERA_DAGSTER_UI_URL) and, as the run's description, a link to
    it; the warehouse file is the source of the runs' datasets."""
    url = f"{settings.dagster_ui_url}/runs/{context.run_id}"
    tags = {
        "dagster_run_id": context.run_id,
        "dagster_run_url": url,
        "dagster_job": context.job_name,
        "source": "tessera",
        NOTE_TAG: f"Logged by Dagster run [{context.run_id[:8]}]({url}) of job `{context.job_name}`.",
    }
    return Tracking(
        settings.mlflow_tracking_uri,
        experiment,
        mlflow_artifact_root(settings),
        tags,
        model_name,
        data_source=settings.duckdb_path.as_uri(),
    )


def write_ml(tessera: TesseraResource, name: str, frame, order_by: str) -> dict:
    """Replace ml.<name> (tessera.mlio.tables.write_ml_table); the table's UI metadata."""
    with tessera.duckdb() as con:
        return table_metadata(con, write_ml_table(con, name, frame, order_by))


class RecommenderConfig(dg.Config):
    """Run-time knobs of the recommender. Every default is RecommenderParams' (the tuned ones) or,
    for the rules on the published list, ListRules'."""

    # "auto" (the family best on a validation split carved from training), lightfm_hybrid, ease or als
    family: str = RecommenderParams.family
    validation_days: int = RecommenderParams.validation_days
    ease_lambda: float = RecommenderParams.ease_lambda
    ease_max_items: int = RecommenderParams.ease_max_items
    ease_half_life_days: float = RecommenderParams.ease_half_life_days
    ease_recent_weight: float = RecommenderParams.ease_recent_weight
    als_factors: int = RecommenderParams.als_factors
    als_regularization: float = RecommenderParams.als_regularization
    als_alpha: float = RecommenderParams.als_alpha
    loss: str = RecommenderParams.loss
    feature_weight: float = RecommenderParams.feature_weight
    half_life_days: float = RecommenderParams.half_life_days
    no_components: int = RecommenderParams.no_components
    learning_rate: float = RecommenderParams.learning_rate
    epochs: int = RecommenderParams.epochs
    test_days: int = RecommenderParams.test_days
    k: int = ListRules.k
    max_per_category: int = ListRules.max_per_category
    exclude_bought: bool = ListRules.exclude_bought
    # LightFM threads: 1 gives the same model on every run (the tests and the gate rely on it)
    num_threads: int = RecommenderParams.num_threads
    # at most this many (pair, epoch) updates per fit (RecommenderParams.max_updates)
    max_updates: int = RecommenderParams.max_updates
    # retrain when the champion's training data is this many days older than today's (0 or 1:
    # every run); unset: TESSERA_RECOMMENDER_RETRAIN_EVERY_DAYS (7). In between, the champion
    # scores today's customers and nothing is trained (ml/rec_run.py plan_refresh).
    retrain_every_days: int | None = None
    # retrain on this run whatever the cadence says (the retrain_recommender job sets it)
    force_retrain: bool = False

    def params(self, seed: int) -> RecommenderParams:
        names = {f.name for f in fields(RecommenderParams)}
        return RecommenderParams(**self.model_dump(include=names), seed=seed)

    def rules(self) -> ListRules:
        return ListRules(k=self.k, max_per_category=self.max_per_category, exclude_bought=self.exclude_bought)

    def cadence(self, settings) -> Cadence:
        every = self.retrain_every_days
        return Cadence(settings.recommender_retrain_every_days if every is None else every, self.force_retrain)


@dg.asset(
    key=RECOMMENDER_KEY,
    deps=gated_deps("dim_customers", "dim_products", "fct_customer_product_interactions", "customer_rec_user_features"),
    group_name=ML_GROUP,
    description=(
        "LightFM hybrid recommender (user features, point in time: gender, country, region, age "
        "band, RFM bins and segment, last device; item features: category, brand, price band). "
        "Evaluated with user features as of the holdout start on a time-based holdout against most-popular, "
        "recently-popular, item-item and ids-only LightFM baselines (warm, re-buy, cold-user and "
        "cold-item slices; ml/rec_evaluation.py), logged to MLflow, then refit on all interactions "
        "to score top-k candidates."
    ),
    kinds={"python", "lightfm", "mlflow", "duckdb"},
    metadata={"dagster/column_schema": declared_schema("ml.recommendation_candidates")},
    owners=["team:data-science"],
    pool=DUCKDB_POOL,
)
def recommendation_candidates(
    context: dg.AssetExecutionContext, tessera: TesseraResource, config: RecommenderConfig
) -> dg.MaterializeResult:
    started, phase, settings = time.perf_counter(), Phases(), tessera.settings()
    params = config.params(settings.seed)
    tracking = tracking_for(context, settings, settings.mlflow_experiment, settings.mlflow_model_name)
    pseudonym.check_salt(settings.pseudonym_salt, settings.mode)
    with phase("read"), tessera.duckdb(read_only=True) as con:
        # the training set, and so every MLflow artifact, knows customers only by customer_pkey
        frames, internal_keys = read_training_frames(con, settings.pseudonym_salt, params.test_days)
    n_interactions = len(frames.interactions)
    # within the cadence the champion scores today's customers; thin data trains nothing (the
    # lists come from the champion or popularity); either way the reason reaches the run summary
    gate = GateRule(min_users=settings.promotion_min_users, seed=settings.seed)
    cadence = config.cadence(settings)
    run = refresh_recommender(frames, params, config.rules(), tracking, gate, cadence, context.log, phase)
    # at 1M customers the training frames are GBs: let go before the lists are written (docs/scaling.md)
    del frames
    release_unused()
    with phase("write"), tessera.duckdb() as con:
        table = table_metadata(con, write_candidates(con, run.recs, internal_keys))
    return dg.MaterializeResult(
        metadata={**table, **run_metadata(started, n_interactions), **recommender_metadata(settings, run, phase)}
    )


def recommender_metadata(settings, run: RecommenderRun, phase: Phases) -> dict:
    """What the UI shows of a recommender run: where the lists came from and, when a model was
    trained, the gate's decision, the MLflow run and the primary slice's metrics."""
    lists = {"lists_from": run.lists_from, "lists_from_version": run.lists_version}
    if run.refresh is None:
        return {"skipped_reason": run.skipped_reason, "promoted": False, **lists}
    refresh = {
        "refresh": run.refresh.kind,  # retrain or score_only
        "refresh_reason": run.refresh.reason,
        "retrain_every_days": run.refresh.every_days,
        "data_through": str(run.refresh.data_through),
        "next_retrain_due": run.refresh.next_retrain,
    }
    if run.decision is None:  # scored with the champion: nothing trained, nothing registered
        return {
            **mlflow_run_metadata(settings, run.scoring_run_id),
            **refresh,
            "promoted": False,
            "seconds_by_phase": dg.MetadataValue.json(phase.seconds),
            "registered_model": settings.mlflow_model_name,
            "champion_version": run.refresh.champion_version,
            "champion_trained_through": str(run.refresh.trained_through),
            **lists,
            "mlflow_run_id": run.scoring_run_id,
        }
    decision = run.decision
    return {
        **refresh,
        **mlflow_run_metadata(settings, run.logged.run_id, run.plot, "ndcg_by_slice"),
        "promoted": decision.promoted,
        "seconds_by_phase": dg.MetadataValue.json(phase.seconds),
        "registered_model": settings.mlflow_model_name,
        "challenger_version": decision.challenger_version,
        "champion_version": str(decision.champion_now),
        "gate": decision.summary(),
        "gate_record": dg.MetadataValue.json(decision.record()),
        "gate_users_evaluated": decision.verdict.users,
        "gate_min_users": decision.verdict.min_users,
        **lists,
        "mlflow_run_id": run.logged.run_id,
        "mlflow_model_uri": run.logged.model_uri,
        # the primary slice only; every slice is in the MLflow run
        **{k: dg.MetadataValue.float(v) for k, v in primary_metrics(run.metrics).items()},
    }


@dg.asset_check(
    pool=DUCKDB_POOL,  # it reads the DuckDB file: never beside another run's writer
    asset=RECOMMENDER_KEY,
    blocking=True,
    description=(
        "Every candidate names a known customer and an active product; the published rules hold: "
        "at most top_n per customer with ranks 1..n, at most max_per_category per category, no "
        "product the customer bought unless exclusion is off, no personalised list without consent."
    ),
)
def candidates_reference_known_customers_and_active_products(tessera: TesseraResource) -> dg.AssetCheckResult:
    with tessera.duckdb(read_only=True) as con:
        metadata = candidate_rule_violations(con)
    return dg.AssetCheckResult(
        passed=not any(metadata.values()), severity=dg.AssetCheckSeverity.ERROR, metadata=metadata
    )


class PropensityConfig(dg.Config):
    max_train_rows: int = MAX_TRAIN_ROWS  # each fit samples this many labelled customers at most


@dg.asset(
    key=PROPENSITY_KEY,
    deps=gated_deps("customer_feature_snapshots", "customer_propensity_labels"),
    group_name=ML_GROUP,
    description=(
        "Purchase-in-30-days propensity and churn risk from gradient-boosted trees trained point in time: "
        "features of the oldest labelled snapshot, evaluated out of time on the next one against a "
        "recency-only baseline (AUC, PR-AUC, calibration in MLflow), refit on the latest labelled "
        "snapshot and applied to the current features."
    ),
    kinds={"python", "scikitlearn", "mlflow", "duckdb"},
    metadata={"dagster/column_schema": declared_schema("ml.propensity_scores")},
    owners=["team:data-science"],
    pool=DUCKDB_POOL,
)
def propensity_scores(
    context: dg.AssetExecutionContext, tessera: TesseraResource, config: PropensityConfig
) -> dg.MaterializeResult:
    started, settings = time.perf_counter(), tessera.settings()
    with tessera.duckdb(read_only=True) as con:
        frames = read_feature_snapshots(con)
    tracking = tracking_for(context, settings, PROPENSITY_EXPERIMENT)
    # thin data: the table is still written (every score null, no run), so the scores and
    # everything else downstream publish; the reason is in the UI and the run summary
    run = score_propensities(frames, settings.seed, config.max_train_rows, tracking, context.log)
    del frames
    table = write_ml(tessera, "propensity_scores", run.scores, "customer_key")
    return dg.MaterializeResult(
        metadata={**table, **run_metadata(started, run.rows_read), **propensity_metadata(settings, run)}
    )


def propensity_metadata(settings, run: PropensityRun) -> dict:
    """Why a target has no model; each trained model's metrics, MLflow run and the comparison chart."""
    metadata = {f"{target}/skipped_reason": reason for target, reason in run.skipped.items()}
    if run.skipped:
        metadata["skipped_reason"] = run.skipped_reason
    for target, metrics in run.metrics.items():
        metadata.update({f"{target}/{k}": dg.MetadataValue.float(float(v)) for k, v in metrics.items()})
        metadata[f"{target}/mlflow_run_id"] = run.runs[target]
    for target, run_id in run.runs.items():
        linked = mlflow_run_metadata(settings, run_id, run.plot, "propensity_vs_baseline")
        metadata[f"{target}/mlflow_run"] = linked["mlflow_run"]
        metadata["plot"] = linked["plot"]
    return metadata


class ClusteringConfig(dg.Config):
    k_min: int = K_MIN
    k_max: int = K_MAX
    fit_sample: int = FIT_SAMPLE  # centroids are fitted on at most this many customers, then all are assigned


@dg.asset(
    key=CLUSTERS_KEY,
    deps=gated_deps("customer_features"),
    group_name=ML_GROUP,
    description=(
        "K-Means behavioural clusters of customers with at least one order (standardised, log-scaled "
        "features; k chosen by silhouette), each with a description of what sets it apart. "
        "Customers without an order get cluster -1. Tracked in MLflow."
    ),
    kinds={"python", "scikitlearn", "mlflow", "duckdb"},
    metadata={"dagster/column_schema": declared_schema("ml.customer_clusters")},
    owners=["team:data-science"],
    pool=DUCKDB_POOL,
)
def customer_clusters(
    context: dg.AssetExecutionContext, tessera: TesseraResource, config: ClusteringConfig
) -> dg.MaterializeResult:
    started, settings = time.perf_counter(), tessera.settings()
    with tessera.duckdb(read_only=True) as con:
        features = read_behavioural_features(con)
    tracking = tracking_for(context, settings, SEGMENTS_EXPERIMENT)
    # thin data: every customer keeps cluster -1 with the reason, no run; downstream still publishes
    run = cluster_and_log(features, config.k_min, config.k_max, config.fit_sample, settings.seed, tracking, context.log)
    table = write_ml(tessera, "customer_clusters", run.clusters, "customer_key")
    metadata = {**table, **run_metadata(started, len(features))}
    if run.result is None:
        return dg.MaterializeResult(metadata={**metadata, "skipped_reason": run.skipped_reason})
    result = run.result
    return dg.MaterializeResult(
        metadata={
            **metadata,
            **mlflow_run_metadata(settings, run.run_id, run.plot, "silhouette_by_k"),
            "mlflow_run_id": run.run_id,
            "chosen_k": result.k,
            "silhouette_by_k": dg.MetadataValue.json({str(k): round(v, 4) for k, v in result.silhouette_by_k.items()}),
            "clusters": dg.MetadataValue.md(
                "| cluster | size | what sets it apart |\n| --- | --- | --- |\n"
                + "\n".join(f"| {c} | {result.sizes[c]} | {d} |" for c, d in result.descriptions.items())
            ),
        }
    )


class ProductListsConfig(dg.Config):
    """Run-time knobs of the lists per product; every default is ListParams' (ml/product_lists.py
    says why)."""

    top_n: int = ListParams.top_n
    min_support: int = ListParams.min_support
    max_basket_items: int = ListParams.max_basket_items
    brand_weight: float = ListParams.brand_weight
    price_band_weight: float = ListParams.price_band_weight

    def params(self) -> ListParams:
        return ListParams(**self.model_dump())


@dg.asset(
    key=PRODUCT_LISTS_KEY,
    deps=gated_deps("dim_products", "dim_customers", "fct_order_items", "fct_events"),
    group_name=ML_GROUP,
    description=(
        "Lists per product (ml/product_lists.py): bought_together (products in the same completed "
        "order) and viewed_together (viewed in the same session), scored by cosine co-occurrence "
        "with at least min_support baskets; similar (TF-IDF of the name, brand and price band, within "
        "the category). Top N per product, active products only, never the product itself."
    ),
    kinds={"python", "duckdb"},
    metadata={"dagster/column_schema": declared_schema("ml.product_recommendations")},
    owners=["team:data-science"],
    pool=DUCKDB_POOL,
)
def product_recommendations(tessera: TesseraResource, config: ProductListsConfig) -> dg.MaterializeResult:
    started = time.perf_counter()
    with tessera.duckdb(read_only=True) as con:
        lists = build_product_lists(con, config.params())
    with tessera.duckdb() as con:
        table = table_metadata(con, write_product_lists(con, lists))
    sizes = {f"products_with_{name}": dg.MetadataValue.int(n) for name, n in list_sizes(lists).items()}
    return dg.MaterializeResult(metadata={**table, **run_metadata(started, lists.height), **sizes})


# each blocking check on ml.product_recommendations: the count of tessera/mlio/sql/product_list_violations.sql it reads
PRODUCT_LIST_CHECKS = {
    "product_lists_never_recommend_the_product_itself": (
        "self_recommendations",
        "No list names the product it belongs to.",
    ),
    "product_lists_recommend_only_active_products": (
        "inactive_recommendations",
        "Every recommended product is active in dim_products.",
    ),
    "product_lists_recommend_known_products": (
        "unknown_recommended_products",
        "Every recommended product id exists in dim_products.",
    ),
    "product_list_ranks_run_from_one_without_gaps": (
        "lists_with_gaps_in_ranks",
        "The ranks of each (product, list) are 1..n, each once.",
    ),
}


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(name, asset=PRODUCT_LISTS_KEY, description=description, blocking=True)
        for name, (_, description) in PRODUCT_LIST_CHECKS.items()
    ],
    pool=DUCKDB_POOL,  # it reads the DuckDB file: never beside another run's writer
)
def product_lists_hold_their_rules(tessera: TesseraResource):
    with tessera.duckdb(read_only=True) as con:
        violations = product_list_violations(con)
    for name, (column, _) in PRODUCT_LIST_CHECKS.items():
        yield dg.AssetCheckResult(
            check_name=name,
            asset_key=PRODUCT_LISTS_KEY,
            passed=violations[column] == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"violations": violations[column]},
        )
