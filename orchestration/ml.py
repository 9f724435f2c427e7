"""The recommender asset: train LightFM on the marts, evaluate it against popularity, log to MLflow."""

import dagster as dg
import numpy as np

from ml.recommender import RecommenderParams, build_data, evaluate, fit, purchased_matrix, recommend
from ml.tracking import log_recommender_run
from orchestration.dbt import model_key
from orchestration.resources import DUCKDB_POOL, TesseraResource
from tessera.settings import mlflow_artifact_root

RECOMMENDER_KEY = dg.AssetKey(["ml", "recommendation_candidates"])
PUBLISHED_K = 10  # the published contract: top 10 per customer
USER_FEATURES = ["gender", "country_code", "age_band"]
ITEM_FEATURES = ["category", "brand", "price_band"]


class RecommenderConfig(dg.Config):
    loss: str = "warp"
    no_components: int = 32
    learning_rate: float = 0.05
    epochs: int = 30
    test_days: int = 21
    k: int = PUBLISHED_K

    def params(self, seed: int) -> RecommenderParams:
        return RecommenderParams(
            loss=self.loss,
            no_components=self.no_components,
            learning_rate=self.learning_rate,
            epochs=self.epochs,
            test_days=self.test_days,
            k=self.k,
            seed=seed,
        )


USERS_SQL = """
select
    customer_key,
    gender,
    country_code,
    case
        when birth_date is null then 'unknown'
        else cast(floor(date_diff('year', birth_date, (select max(as_of_date) from marts.customer_rfm)) / 10) * 10 as integer) || 's'
    end as age_band
from marts.dim_customers
where not is_erasure_requested
"""
ITEMS_SQL = "select product_id, category, brand, price_band, is_active from marts.dim_products"
INTERACTIONS_SQL = """
select customer_key, product_id, interaction_type, occurred_at
from marts.fct_customer_product_interactions
"""


@dg.asset(
    key=RECOMMENDER_KEY,
    deps=[model_key(m) for m in ("dim_customers", "dim_products", "fct_customer_product_interactions", "customer_rfm")],
    group_name="ml",
    description=(
        "LightFM hybrid recommender (user features: gender, country, age band; item features: "
        "category, brand, price band). Evaluated on a time-based holdout against a popularity "
        "baseline, logged to MLflow, then refit on all interactions to score top-k candidates."
    ),
    kinds={"python", "lightfm", "mlflow", "duckdb"},
    owners=["team:data-science"],
    pool=DUCKDB_POOL,
)
def recommendation_candidates(
    context: dg.AssetExecutionContext, tessera: TesseraResource, config: RecommenderConfig
) -> dg.MaterializeResult:
    settings = tessera.settings()
    params = config.params(settings.seed)
    with tessera.duckdb(read_only=True) as con:
        users = con.execute(USERS_SQL).df()
        items = con.execute(ITEMS_SQL).df()
        interactions = con.execute(INTERACTIONS_SQL).df()
    if interactions.empty:
        raise ValueError("fct_customer_product_interactions is empty: nothing to train on")
    data = build_data(users, items, interactions, USER_FEATURES, ITEM_FEATURES)
    _, lightfm_eval, popularity_eval = evaluate(data, params)
    metrics = dict(lightfm_eval.metrics)
    metrics.update({f"popularity_{k}": v for k, v in popularity_eval.metrics.items()})
    metrics["test_users"] = lightfm_eval.n_users
    metrics.update({k: float(v) for k, v in lightfm_eval.extra.items()})
    context.log.info(f"holdout from {lightfm_eval.split_at.date()}: {metrics}")

    model = fit(data, data.interactions, params)
    active = items.set_index("product_id").loc[data.items.ids, "is_active"].to_numpy(dtype=bool)
    recs = recommend(model, data, purchased_matrix(data), active, params.k)

    logged = log_recommender_run(
        tracking_uri=settings.mlflow_tracking_uri,
        experiment=settings.mlflow_experiment,
        artifact_root=mlflow_artifact_root(settings),
        params={
            **params.as_dict(),
            "user_features": ",".join(USER_FEATURES),
            "item_features": ",".join(ITEM_FEATURES),
            "split_at": str(lightfm_eval.split_at.date()),
            "n_users": len(data.users.ids),
            "n_items": len(data.items.ids),
        },
        metrics=metrics,
        bundle={
            "model": model,
            "user_id_map": data.users.id_map,
            "item_ids": data.items.ids,
            "user_features": data.users.matrix,
            "item_features": data.items.matrix,
            "user_feature_names": data.users.feature_names,
            "item_feature_names": data.items.feature_names,
            "k": params.k,
        },
        tags={"dagster_run_id": context.run_id, "source": "tessera"},
        mappings={"users": data.users.ids, "items": data.items.ids},
    )
    recs["model_run_id"] = logged.run_id
    with tessera.duckdb() as con:
        con.execute("create schema if not exists ml")
        con.register("recs_df", recs)
        con.execute(
            "create or replace table ml.recommendation_candidates as select * from recs_df order by customer_key, rank"
        )
        con.unregister("recs_df")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(recs),
            "mlflow_run_id": logged.run_id,
            "mlflow_model_uri": logged.model_uri,
            "mlflow_run_path": logged.run_url_path,
            **{k: dg.MetadataValue.float(float(v)) for k, v in metrics.items() if np.isfinite(v)},
        }
    )


@dg.asset_check(
    asset=RECOMMENDER_KEY,
    blocking=True,
    description="Every candidate names a known customer and an active product; at most k per customer, ranks 1..k.",
)
def candidates_reference_known_customers_and_active_products(tessera: TesseraResource) -> dg.AssetCheckResult:
    with tessera.duckdb(read_only=True) as con:
        unknown_customers, inactive_products, over_k, bad_rank = con.execute(
            """
            select
                count(*) filter (where c.customer_key is null),
                count(*) filter (where p.product_id is null or not p.is_active),
                (select count(*) from (select customer_key from ml.recommendation_candidates group by 1 having count(*) > ?)),
                count(*) filter (where r.rank < 1 or r.rank > ?)
            from ml.recommendation_candidates as r
            left join marts.dim_customers as c on c.customer_key = r.customer_key
            left join marts.dim_products as p on p.product_id = r.product_id
            """,
            [PUBLISHED_K, PUBLISHED_K],
        ).fetchone()
    passed = unknown_customers == 0 and inactive_products == 0 and over_k == 0 and bad_rank == 0
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "unknown_customers": unknown_customers,
            "inactive_or_unknown_products": inactive_products,
            "customers_over_k": over_k,
            "ranks_out_of_range": bad_rank,
        },
    )
