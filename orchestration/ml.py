"""ML assets: the LightFM recommender, propensity scores and behavioural clusters, each tracked in MLflow."""

import time
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from ml.rec_evaluation import (
    PRIMARY_SLICE,
    SLICES,
    empty_slices,
    evaluate_per_user,
    holdout_shortfall,
    holdout_start,
    loggable_metrics,
    time_split,
)
from ml.recommender import (
    RecommenderParams,
    build_data,
    fit,
    purchased_matrix,
    recommend,
    with_feature_weight,
)
from ml.plots import grouped_bar_png
from tessera.privacy import pseudonym
from tessera.privacy.erasure import NOT_ERASED
from orchestration.privacy import ERASURE_KEY
from ml.tracking import log_recommender_run
from orchestration.dbt import model_key
from orchestration.metadata import run_metadata, table_metadata
from orchestration.quality import gated_marts_upstream
from orchestration.resources import DUCKDB_POOL, TesseraResource
from tessera.memory import release_unused
from tessera.settings import mlflow_artifact_root
from tessera.timing import Phases


def gated_deps(*models: str) -> list[dg.AssetKey]:
    """The dbt models an ML asset reads, plus the gated marts upstream of them (see
    orchestration.quality.gated_marts_upstream): a failing marts gate holds the asset back."""
    keys = [model_key(m) for m in models]
    # after erasure: nothing of a person who asked for it is trained on (orchestration/privacy.py)
    return keys + [k for k in gated_marts_upstream(models) if k not in keys] + [ERASURE_KEY]

RECOMMENDER_KEY = dg.AssetKey(["ml", "recommendation_candidates"])
PUBLISHED_K = 10  # the published contract: top 10 per customer
# marts.customer_rec_user_features, point in time: demographics, then behaviour as of a snapshot
STATIC_USER_FEATURES = ["gender", "country_code", "region", "age_band"]
USER_FEATURES = [*STATIC_USER_FEATURES, "r_bin", "f_bin", "m_bin", "rfm_segment", "last_device"]
ITEM_FEATURES = ["category", "brand", "price_band"]


def write_ml_table(tessera: TesseraResource, name: str, frame: pd.DataFrame, order_by: str) -> dict:
    """Replace ml.<name> with a DataFrame, in a stable row order; the table's UI metadata.
    Categorical columns are written as text (DuckDB would make them ENUMs), and sorted as text."""
    categorical = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    columns = f"* replace ({', '.join(f'cast({c} as varchar) as {c}' for c in categorical)})" if categorical else "*"
    with tessera.duckdb() as con:
        con.execute("create schema if not exists ml")
        con.register("frame_df", frame)
        try:
            con.execute(
                f"create or replace table ml.{name} as select * from (select {columns} from frame_df) order by {order_by}"
            )
        finally:
            con.unregister("frame_df")
        return table_metadata(con, f"ml.{name}")


def constant_column(value: str, n: int) -> pd.Categorical:
    """`value` on each of `n` rows, as a categorical: one byte a row where a text column repeats
    the string (10M rows at 1M customers)."""
    return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=pd.Index([value]))


def mlflow_run_metadata(settings, run_id: str, plot: bytes | None = None, plot_name: str = "plot") -> dict:
    """A link to the MLflow run in its UI and, given a PNG, the chart: logged to the run under
    plots/ and shown inline in the Dagster UI."""
    import base64
    import tempfile
    from pathlib import Path

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    experiment_id = client.get_run(run_id).info.experiment_id
    metadata = {
        "mlflow_run": dg.MetadataValue.url(f"{settings.mlflow_ui_url}/#/experiments/{experiment_id}/runs/{run_id}")
    }
    if plot is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{plot_name}.png"
            path.write_bytes(plot)
            client.log_artifact(run_id, str(path), artifact_path="plots")
        encoded = base64.b64encode(plot).decode()
        metadata["plot"] = dg.MetadataValue.md(f"![{plot_name}](data:image/png;base64,{encoded})")
    return metadata


def usable_features(profile: pd.DataFrame) -> np.ndarray:
    """Customers with at least one known demographic: a customer without history has no
    behaviour to speak of, so only these can be ranked from features."""
    static = profile[STATIC_USER_FEATURES].fillna("unknown").astype(str)
    return ((static != "unknown") & (static != "U")).any(axis=1).to_numpy()


def ranked_lists(
    model,
    data,
    profile: pd.DataFrame,
    cold: np.ndarray,
    bought: sp.csr_matrix,
    popularity,
    items,
    config,
    zero_identity=True,
    everyone_popular=False,
):
    """The rules on the published list: top `k` per customer, already-bought products left out
    (configurable), inactive products never, at most `max_per_category` per category. `cold`
    customers are ranked from their features; without usable features, or without
    personalisation consent, customers get the most popular products (their history unused).
    `profile` is aligned with data.users.ids; `bought` with (users, items). zero_identity=False
    when the user rows have no identity feature to drop (ml.recommender.recommend).
    everyone_popular=True: every customer gets the `popularity` ranking (a baseline's lists, when
    the gate publishes no model), with what they bought left out where they consented."""
    consent = profile["personalization_consent"].fillna(True).astype(bool).to_numpy()
    popular = np.ones(len(consent), dtype=bool) if everyone_popular else ~consent | (cold & ~usable_features(profile))
    exclude = bought if config.exclude_bought else sp.csr_matrix(bought.shape, dtype=np.float32)
    personal = consent if everyone_popular else ~popular
    exclude = sp.diags(personal.astype(np.float32)) @ exclude  # no personal history without consent
    by_id = items.set_index("product_id")
    active = by_id["is_active"].reindex(data.items.ids).fillna(False).to_numpy(dtype=bool)
    category = by_id["category"].reindex(data.items.ids).fillna("unknown")
    codes, uniques = pd.factorize(category, sort=True)
    recs = recommend(
        model,
        data,
        exclude.tocsr(),
        active,
        config.k,
        cold_users=cold & ~popular,
        popular_users=popular,
        popularity=popularity,
        item_group=codes,
        max_per_group=config.max_per_category,
        zero_identity=zero_identity,
    )
    # product_id's codes are item indices (recommend): the category by code, as a categorical too
    recs["category"] = pd.Categorical.from_codes(codes[recs["product_id"].cat.codes.to_numpy()], categories=uniques)
    return recs.assign(top_n=config.k, max_per_category=config.max_per_category)


def published_candidates(model, data, users: pd.DataFrame, items: pd.DataFrame, config) -> pd.DataFrame:
    """Every customer's list from the model just trained (ranked_lists); customers without any
    interaction are cold."""
    from ml.rec_baselines import MostPopular

    profile = users.set_index("customer_key").loc[data.users.ids]
    popularity = MostPopular(data.interactions, len(data.items.ids)).scores
    return ranked_lists(model, data, profile, ~has_history(data), purchased_matrix(data), popularity, items, config)


def baseline_candidates(model, data, users: pd.DataFrame, items: pd.DataFrame, config, baseline: str, recent_days: int) -> pd.DataFrame:
    """Every customer's list from a simple baseline (ml/rec_baselines.py) over all interactions,
    under the published rules: what the gate publishes when no model may be (no champion yet and
    the first model not shown to be as good as the baseline). Rows have source 'popularity'."""
    from ml.rec_baselines import MostPopular, RecentlyPopular

    n_items = len(data.items.ids)
    if baseline == "most_popular":
        popularity = MostPopular(data.interactions, n_items).scores
    elif baseline == "recently_popular":
        popularity = RecentlyPopular(data.interactions, n_items, window_days=recent_days).scores
    else:
        raise ValueError(f"no published fallback for baseline {baseline!r}")
    profile = users.set_index("customer_key").loc[data.users.ids]
    return ranked_lists(
        model, data, profile, ~has_history(data), purchased_matrix(data), popularity, items, config, everyone_popular=True
    )


CANDIDATE_COLUMNS = {  # ml.recommendation_candidates (text as "string": DuckDB reads it as VARCHAR, nulls too)
    "customer_key": "string",
    "rank": "int64",
    "product_id": "string",
    "score": "float64",
    "source": "string",
    "category": "string",
    "top_n": "int64",
    "max_per_category": "int64",
    "model_run_id": "string",
    "model_version": "string",
}


def popular_without_model(users: pd.DataFrame, items: pd.DataFrame, interactions: pd.DataFrame, config, label: str) -> pd.DataFrame:
    """With no model to rank with (thin data, no champion): one list for every customer, the
    active products by distinct buyers, then distinct users with any interaction (MostPopular),
    at most `max_per_category` per category; nothing personal is used. No interaction or no
    active product: no rows."""
    from ml.rec_baselines import MostPopular

    active = items[items["is_active"].fillna(False).astype(bool)].sort_values("product_id").reset_index(drop=True)
    if interactions.empty or active.empty or users.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in CANDIDATE_COLUMNS.items()})
    index = {p: n for n, p in enumerate(active["product_id"].astype(str))}
    inter = interactions.assign(u=interactions["customer_key"].astype(str), i=interactions["product_id"].astype(str).map(index))
    inter = inter[inter["i"].notna()].astype({"i": np.int64})
    scores = MostPopular(inter, len(active)).scores
    order = np.lexsort((np.arange(len(active)), -scores))  # best first, ties by product id
    category = active["category"].fillna("unknown").astype(str).to_numpy()
    picked, per_category = [], {}
    for i in order:
        if per_category.get(category[i], 0) < config.max_per_category:
            picked.append(i)
            per_category[category[i]] = per_category.get(category[i], 0) + 1
        if len(picked) == config.k:
            break
    keys = users["customer_key"].astype(str).to_numpy()
    n, m = len(keys), len(picked)
    return pd.DataFrame(
        {
            "customer_key": np.repeat(keys, m),
            "rank": np.tile(np.arange(1, m + 1, dtype=np.int64), n),
            "product_id": np.tile(active["product_id"].astype(str).to_numpy()[picked], n),
            "score": np.tile(scores[picked].astype(np.float64), n),
            "source": "popularity",
            "category": np.tile(category[picked], n),
            "top_n": np.int64(config.k),
            "max_per_category": np.int64(config.max_per_category),
            "model_run_id": None,
            "model_version": label,
        }
    )[list(CANDIDATE_COLUMNS)].astype(CANDIDATE_COLUMNS)


def has_history(data) -> np.ndarray:
    """Per user index: has at least one interaction in data.interactions."""
    has = np.zeros(len(data.users.ids), dtype=bool)
    has[data.interactions["u"].to_numpy()] = True
    return has


def model_bundle(model, data, k: int) -> dict:
    """What the registered artifact holds: the model, id maps, feature matrices and names, and the
    customers without any interaction at training time (ranked from features, champion_lists_for)."""
    return {
        "model": model,
        "user_id_map": data.users.id_map,
        "item_ids": data.items.ids,
        "user_features": data.users.matrix,
        "item_features": data.items.matrix,
        "user_feature_names": data.users.feature_names,
        "item_feature_names": data.items.feature_names,
        "k": k,
        "cold_user_ids": sorted(np.asarray(data.users.ids, dtype=object)[~has_history(data)].tolist()),
    }


def champion_lists_for(bundle: dict, feature_weight: float, customers: pd.DataFrame, items, interactions, config) -> pd.DataFrame:
    """Today's lists from a registered model (its MLflow bundle), under today's rules: customers
    the model was trained on keep their trained rows (identity and features, as in training);
    customers it never saw, or saw without history (bundle "cold_user_ids"), are ranked from
    today's features in the model's own feature space (ml.recommender.unseen_user_rows); the
    popularity fallback, consent, purchases and active products are today's."""
    from ml.rec_baselines import MostPopular
    from ml.recommender import FeatureSpace, RecData, index_of, pairs_matrix, unseen_user_rows

    keys = customers["customer_key"].astype(str).tolist()
    names = bundle["user_feature_names"]
    trained = bundle["user_id_map"]
    cold_ids = set(bundle.get("cold_user_ids", ()))
    row_in_model = np.array([trained.get(k, -1) if k not in cold_ids else -1 for k in keys], dtype=np.int64)
    warm = row_in_model >= 0
    pick = sp.csr_matrix(
        (np.ones(int(warm.sum()), dtype=np.float32), (np.flatnonzero(warm), row_in_model[warm])),
        shape=(len(keys), bundle["user_features"].shape[0]),
    )
    unseen = sp.diags((~warm).astype(np.float32)) @ unseen_user_rows(names, customers, feature_weight)
    rows = (pick @ bundle["user_features"] + unseen).tocsr().astype(np.float32)

    item_ids = [str(i) for i in bundle["item_ids"]]
    users_space = FeatureSpace(keys, {k: n for n, k in enumerate(keys)}, names, rows)
    items_space = FeatureSpace(item_ids, {k: n for n, k in enumerate(item_ids)}, bundle["item_feature_names"], bundle["item_features"])
    inter = interactions.assign(
        u=index_of(interactions["customer_key"], users_space.id_map),
        i=index_of(interactions["product_id"], items_space.id_map),
    )
    mine = inter[(inter["u"] >= 0) & (inter["i"] >= 0)]
    data = RecData(users=users_space, items=items_space, interactions=mine)
    bought = pairs_matrix(mine[mine["interaction_type"] == "purchase"], (len(keys), len(item_ids)))
    popularity = MostPopular(mine, len(item_ids)).scores
    profile = customers.set_index("customer_key").loc[keys]
    return ranked_lists(bundle["model"], data, profile, ~warm, bought, popularity, items, config, zero_identity=False)


def lists_from_champion(settings, version: str, users: pd.DataFrame, items, interactions, config) -> pd.DataFrame:
    """After a rejected challenger: every customer's list from the champion (champion_lists_for)
    with today's rules, so consent withdrawn, products deactivated, purchases made and customers
    arrived since the champion was trained are all honoured. Deterministic: a re-run writes the
    same table."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from ml.registry import champion_params

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    registered = client.get_model_version(settings.mlflow_model_name, version)
    feature_weight = RecommenderParams.from_logged(champion_params(client, registered)).feature_weight
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    bundle = mlflow.pyfunc.load_model(f"models:/{settings.mlflow_model_name}/{version}").unwrap_python_model().bundle
    recs = champion_lists_for(bundle, feature_weight, users, items, interactions, config)
    recs["model_run_id"] = constant_column(registered.run_id, len(recs))
    recs["model_version"] = constant_column(str(version), len(recs))
    return recs


def training_fingerprint(*frames: pd.DataFrame) -> str:
    """A hash of the published model's training tables (interactions, user and item features):
    the same configuration on the same fingerprint is an identical retrain (ml/promotion.py)."""
    total = 0
    for frame in frames:
        hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
        total = (total * 1_000_003 + int(hashed.sum(dtype=np.uint64)) + len(frame)) % 2**64
    return f"{total:016x}"


def promotion_gate(settings, logged, params: RecommenderParams, per_user: dict, evaluation: dict, data, split, fingerprint: str):
    """Register the new model and let the gate (ml/promotion.py) decide on per-user warm NDCG@10:
    against the champion's configuration refitted and evaluated on the same split; with no
    champion, against the best simple baseline; a champion's own configuration on the same
    training data is an identical retrain, on newer data a refresh. Fits are deterministic, so a
    champion with the challenger's own configuration is not refitted. The decision is recorded on
    the model version and the challenger's MLflow run (ml/registry.py)."""
    from mlflow.tracking import MlflowClient

    from ml.promotion import (
        GateRule,
        best_baseline,
        identical_retrain,
        judge_challenger,
        judge_first_model,
        judge_refresh,
    )
    from ml.registry import PRIMARY_METRIC, champion, champion_params, decide, record_on_run, register

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    name = settings.mlflow_model_name
    rule = GateRule(min_users=settings.promotion_min_users, seed=settings.seed)
    current = champion(client, name)
    version = register(client, name, logged.model_uri, logged.run_id)
    hybrid = per_user["lightfm_hybrid"][PRIMARY_SLICE]
    baseline = best_baseline(evaluation, PRIMARY_SLICE, PRIMARY_METRIC)
    if current is None:
        verdict = judge_first_model(hybrid, per_user[baseline][PRIMARY_SLICE], rule, baseline)
    else:
        label = f"champion version {current.version}"
        logged_params = champion_params(client, current)
        champion_config = RecommenderParams.from_logged(logged_params)
        if champion_config == params and logged_params.get("training_data_fingerprint") == fingerprint:
            verdict = identical_retrain(hybrid, rule, label)
        elif champion_config == params:
            verdict = judge_refresh(hybrid, per_user[baseline][PRIMARY_SLICE], rule, baseline, label)
        else:
            _, again = evaluate_per_user(data, split, champion_config, models=["lightfm_hybrid"])
            verdict = judge_challenger(hybrid, again["lightfm_hybrid"][PRIMARY_SLICE], rule, label)
    decision = decide(client, name, version, None if current is None else str(current.version), verdict)
    record_on_run(client, logged.run_id, decision, rule.resamples, rule.seed)
    return decision


def flatten_metrics(evaluation: dict) -> dict[str, float]:
    """MLflow metric names: the hybrid on the primary slice as plain names (precision_at_10, ...),
    each baseline on it as <model>_<metric>, every other slice as <slice>_<model>_<metric>. A slice
    no user was evaluated on logs nothing, and no undefined value is logged (loggable_metrics)."""
    out = {}
    for model, by_slice in evaluation.items():
        for slice_name, metrics in loggable_metrics(by_slice).items():
            for metric, value in metrics.items():
                prefix = "" if model == "lightfm_hybrid" else f"{model}_"
                if slice_name != PRIMARY_SLICE:
                    prefix = f"{slice_name}_{model}_"
                out[prefix + metric] = value
    return out


def model_metrics(evaluation: dict, model: str) -> dict[str, float]:
    """One model's metrics under the hybrid's own names: primary slice plain, others <slice>_<metric>;
    empty slices and undefined values left out, as in flatten_metrics."""
    out = {}
    for slice_name, metrics in loggable_metrics(evaluation[model]).items():
        prefix = "" if slice_name == PRIMARY_SLICE else f"{slice_name}_"
        out.update({prefix + metric: value for metric, value in metrics.items()})
    return out


class RecommenderConfig(dg.Config):
    loss: str = "warp"
    # tuned on the Online Retail and demo holdouts (README, "Recommender evaluation")
    feature_weight: float = 0.03
    half_life_days: float = 30.0
    no_components: int = 64
    learning_rate: float = 0.05
    epochs: int = 30
    test_days: int = 21
    k: int = PUBLISHED_K
    # rules on the published list
    max_per_category: int = 3  # diversity cap: at most this many products of one category
    exclude_bought: bool = True  # leave out products the customer already bought
    # LightFM threads: 1 gives the same model on every run (the tests and the gate rely on it);
    # more trains faster, but parallel updates make runs differ slightly
    num_threads: int = 1
    # at most this many (pair, epoch) updates per fit: large data gets fewer epochs (see
    # RecommenderParams.max_updates; the epochs run are logged as epochs_used)
    max_updates: int = 40_000_000

    def params(self, seed: int) -> RecommenderParams:
        return RecommenderParams(
            loss=self.loss,
            feature_weight=self.feature_weight,
            half_life_days=self.half_life_days,
            no_components=self.no_components,
            learning_rate=self.learning_rate,
            epochs=self.epochs,
            test_days=self.test_days,
            k=self.k,
            num_threads=self.num_threads,
            max_updates=self.max_updates,
            seed=seed,
        )


CUSTOMERS_SQL = """
select customer_key, personalization_consent
from marts.dim_customers
where not is_erasure_requested
order by customer_key
"""
# A customer's features as of a date: their latest snapshot on or before it (NULL: the latest one),
# the point-in-time rule of ml.rec_evaluation.features_as_of, applied in SQL so that only one row
# per customer reaches pandas, not every snapshot.
USER_FEATURES_AS_OF_SQL = f"""
select customer_key, {", ".join(USER_FEATURES)}
from marts.customer_rec_user_features
where customer_key in (select customer_key from marts.dim_customers where not is_erasure_requested)
  and ($as_of is null or as_of_date <= $as_of)
qualify row_number() over (partition by customer_key order by as_of_date desc) = 1
"""
FEATURES_DATE_SQL = """
select max(as_of_date) from marts.customer_rec_user_features
where customer_key in (select customer_key from marts.dim_customers where not is_erasure_requested)
  and as_of_date <= $as_of
"""
def pseudonymised(sql: str, order_by: str) -> str:
    """`sql` with customer_key replaced by customer_pkey(customer_key) (tessera/privacy/pseudonym.py), in a
    fixed order: what the recommender trains on and logs to MLflow carries no internal key."""
    return f"select * replace (customer_pkey(customer_key) as customer_key) from ({sql}) order by {order_by}"


ITEMS_SQL = "select product_id, category, brand, price_band, is_active from marts.dim_products order by product_id"
# The interactions (26M rows at 1M customers) arrive as integer codes, each key column labelled
# once: as strings in pandas they took several GB. Codes follow the labels' sort order, so the
# rows come in the same fixed order as sorting by the keys themselves: a table's physical row
# order may change between builds (parallel joins and windows), and LightFM's fit depends on the
# order interactions arrive in. Customers are known by customer_pkey (the order is the pkeys').
INTERACTION_CODES = """
with customer_codes as (
    select customer_key, customer_pkey(customer_key) as label,
        cast(row_number() over (order by customer_pkey(customer_key)) - 1 as integer) as code
    from marts.dim_customers
    where not is_erasure_requested
),
product_codes as (
    select product_id as label, product_id, cast(row_number() over (order by product_id) - 1 as integer) as code
    from (select distinct product_id from marts.fct_customer_product_interactions where product_id is not null)
),
type_codes as (
    select interaction_type as label, interaction_type,
        cast(row_number() over (order by interaction_type) - 1 as smallint) as code
    from (select distinct interaction_type from marts.fct_customer_product_interactions where interaction_type is not null)
)
"""
INTERACTIONS_SQL = f"""{INTERACTION_CODES}
select c.code as customer_key, p.code as product_id, t.code as interaction_type, f.occurred_at
from marts.fct_customer_product_interactions as f
join customer_codes as c using (customer_key)
join product_codes as p using (product_id)
join type_codes as t using (interaction_type)
order by c.code, p.code, f.occurred_at, t.code
"""


def _timed(phase: Phases, name: str, function, *args):
    with phase(name):
        return function(*args)


def read_interactions(con) -> pd.DataFrame:
    """customer_key (as customer_pkey), product_id, interaction_type and occurred_at of every
    interaction of a customer not asking for erasure, in key order, the three keys categorical.
    Needs pseudonym.install on `con`."""
    frame = con.execute(INTERACTIONS_SQL).df()
    for column, codes in (("customer_key", "customer_codes"), ("product_id", "product_codes"), ("interaction_type", "type_codes")):
        labels = [label for (label,) in con.execute(f"{INTERACTION_CODES} select label from {codes} order by code").fetchall()]
        frame[column] = pd.Categorical.from_codes(frame[column].to_numpy(), categories=pd.Index(labels, dtype=object))
    return frame


@dg.asset(
    key=RECOMMENDER_KEY,
    deps=gated_deps("dim_customers", "dim_products", "fct_customer_product_interactions", "customer_rec_user_features"),
    group_name="ml",
    description=(
        "LightFM hybrid recommender (user features, point in time: gender, country, region, age "
        "band, RFM bins and segment, last device; item features: category, brand, price band). "
        "Evaluated with user features as of the holdout start on a time-based holdout against most-popular, "
        "recently-popular, item-item and ids-only LightFM baselines (warm, re-buy, cold-user and "
        "cold-item slices; ml/rec_evaluation.py), logged to MLflow, then refit on all interactions "
        "to score top-k candidates."
    ),
    kinds={"python", "lightfm", "mlflow", "duckdb"},
    owners=["team:data-science"],
    pool=DUCKDB_POOL,
)
def recommendation_candidates(
    context: dg.AssetExecutionContext, tessera: TesseraResource, config: RecommenderConfig
) -> dg.MaterializeResult:
    started = time.perf_counter()
    phase = Phases()
    settings = tessera.settings()
    params = config.params(settings.seed)
    pseudonym.check_salt(settings.pseudonym_salt, settings.mode)
    with phase("read"), tessera.duckdb(read_only=True) as con:
        # the training set, and so every MLflow artifact, knows customers only by customer_pkey
        pseudonym.install(con, settings.pseudonym_salt)
        customers = con.execute(pseudonymised(CUSTOMERS_SQL, "customer_key")).df()
        items = con.execute(ITEMS_SQL).df()
        interactions = read_interactions(con)
        internal_keys = dict(
            con.execute(f"select customer_pkey(customer_key), customer_key from marts.dim_customers where {NOT_ERASED}").fetchall()
        )
        features_now = con.execute(pseudonymised(USER_FEATURES_AS_OF_SQL, "customer_key"), {"as_of": None}).df()
        # thin data (no interaction, no purchase in the holdout, nothing before it): no model can
        # be evaluated, so none is trained; the lists come from the champion or popularity
        skip_reason = holdout_shortfall(interactions, params.test_days)
        if skip_reason is None:
            # evaluation: user features as of the holdout start, so the holdout cannot leak in through them
            split_at = holdout_start(interactions["occurred_at"], params.test_days)
            as_of = {"as_of": split_at.to_pydatetime()}
            features_then = con.execute(pseudonymised(USER_FEATURES_AS_OF_SQL, "customer_key"), as_of).df()
            features_at = con.execute(FEATURES_DATE_SQL, as_of).fetchone()[0]
    if skip_reason is not None:
        users = customers.merge(features_now, on="customer_key", how="left")
        return skipped_recommender(context, tessera, config, users, items, interactions, internal_keys, skip_reason, started)
    if features_then.empty:
        context.log.warning(f"no user feature snapshot on or before {split_at.date()}: evaluated without user features")
    eval_users = customers[["customer_key"]]
    if len(eval_users) > params.eval_max_users:
        # evaluation fits two models and scores every item per user: on a seeded sample of
        # customers (and their interactions) it costs the same at 100k and at 1M customers
        eval_users = eval_users.sample(n=params.eval_max_users, random_state=params.seed).sort_values("customer_key")
    eval_users = eval_users.merge(features_then, on="customer_key", how="left")
    # at 1M customers each of these frames, and the training data below, is hundreds of MB: each
    # is let go once used, so the process is small again when the lists are written (docs/scaling.md)
    del features_then
    with phase("evaluate_prepare"):
        eval_data = build_data(eval_users, items, interactions, USER_FEATURES, ITEM_FEATURES)
    if (skip_reason := holdout_shortfall(eval_data.interactions, params.test_days)) is not None:
        users = customers.merge(features_now, on="customer_key", how="left")
        reason = f"the evaluation sample of {len(eval_users)} customers: {skip_reason}"
        return skipped_recommender(context, tessera, config, users, items, interactions, internal_keys, reason, started)
    split = time_split(eval_data, params.test_days)
    # The evaluation (two fits and full-catalogue rankings on the sample) and the published model's
    # build, fit and scoring share nothing: the evaluation runs in a second thread meanwhile. The fit
    # runs on one LightFM thread (reproducible) and releases the GIL, as numpy's large array
    # operations do, so the two use both cores; each computes exactly what it did alone. Matrix
    # products run on one BLAS thread meanwhile: the evaluation's rankings on two would take cycles
    # from the fit, the longest part (the scoring ranks chunks on one BLAS thread each anyway).
    with (
        threadpool_limits(limits=1, user_api="blas"),
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="recommender-evaluation") as background,
    ):
        evaluating = background.submit(_timed, phase, "evaluate", evaluate_per_user, eval_data, split, params)

        # the published model: every interaction, today's features
        users = customers.merge(features_now, on="customer_key", how="left")
        del customers, features_now
        with phase("build"):
            data = build_data(users, items, interactions, USER_FEATURES, ITEM_FEATURES)
            data = with_feature_weight(data, params.feature_weight)
        with phase("fit"):
            model = fit(data, data.interactions, params)
        with phase("score"):
            recs = published_candidates(model, data, users, items, config)
        with phase("evaluate_wait"):  # what the evaluation took beyond the published model's work
            evaluation, per_user = evaluating.result()  # raises the evaluation's error, if any
        with phase("fingerprint"):
            fingerprint = training_fingerprint(interactions, users, items)
    metrics = flatten_metrics(evaluation)
    if empty := empty_slices(evaluation):
        context.log.info(f"no user to evaluate on slice(s) {', '.join(empty)}: no metric logged for them")
    metrics.update({k: float(v) for k, v in split.describe().items() if k != "split"})
    metrics["eval_customers"] = float(len(eval_users))
    context.log.info(
        f"holdout from {split.split_at.date()}, user features as of {features_at}: "
        f"{evaluation['lightfm_hybrid'][PRIMARY_SLICE]}"
    )

    published_pairs = int(data.interactions[["u", "i"]].drop_duplicates().shape[0])
    evaluated_pairs = int(split.train[["u", "i"]].drop_duplicates().shape[0])
    if note := params.budget_note(published_pairs, evaluated_pairs):
        context.log.warning(note)
    with phase("mlflow_log"):
        logged = log_recommender_run(
            tracking_uri=settings.mlflow_tracking_uri,
            experiment=settings.mlflow_experiment,
            artifact_root=mlflow_artifact_root(settings),
            params={
                **params.as_dict(),
                "user_features": ",".join(USER_FEATURES),
                "item_features": ",".join(ITEM_FEATURES),
                "split_at": str(split.split_at.date()),
                "user_features_as_of": str(features_at),
                "epochs_used": params.epochs_for(published_pairs),
                "eval_epochs_used": params.epochs_for(evaluated_pairs),
                "primary_slice": PRIMARY_SLICE,
                "n_users": len(data.users.ids),
                "n_items": len(data.items.ids),
                "training_data_fingerprint": fingerprint,
                "empty_slices": ",".join(empty) or "none",
            },
            metrics=metrics,
            bundle=model_bundle(model, data, params.k),
            tags={"dagster_run_id": context.run_id, "source": "tessera"},
            mappings={"users": data.users.ids, "items": data.items.ids},
            baselines={m: model_metrics(evaluation, m) for m in evaluation if m != "lightfm_hybrid"},
            shared_params={
                "split_at": str(split.split_at.date()),
                "primary_slice": PRIMARY_SLICE,
                "k": params.k,
                "test_days": params.test_days,
                "recent_days": params.recent_days,
            },
        )
    with phase("promotion_gate"):
        decision = promotion_gate(settings, logged, params, per_user, evaluation, eval_data, split, fingerprint)
    if decision.lists_from == "challenger":
        context.log.info(decision.summary())
        recs["model_run_id"] = constant_column(logged.run_id, len(recs))
        recs["model_version"] = constant_column(decision.challenger_version, len(recs))
    elif decision.lists_from == "champion":
        # published recommendations come only from the champion: it scores today's customers
        with phase("champion_lists"):
            recs = lists_from_champion(settings, decision.champion_now, users, items, interactions, config)
        context.log.warning(f"{decision.summary()}; every list rewritten by champion version {decision.champion_now}")
    else:
        # no champion, and the first model was not shown to be as good as the best baseline: the
        # baseline's lists, marked with it (model_version 'baseline:<name>', its nested MLflow run)
        baseline = decision.lists_from.removeprefix("baseline:")
        with phase("baseline_lists"):
            recs = baseline_candidates(model, data, users, items, config, baseline, params.recent_days)
        recs["model_run_id"] = constant_column(logged.children[baseline], len(recs))
        recs["model_version"] = constant_column(decision.lists_from, len(recs))
        context.log.warning(f"{decision.summary()}; every list is {baseline}'s ({decision.lists_from})")
    n_interactions = len(interactions)
    del interactions, data, model, users, eval_data
    release_unused()
    # back to the internal key for the warehouse (the published tables pseudonymise it again)
    recs["customer_key"] = recs["customer_key"].map(internal_keys)
    if recs["customer_key"].isna().any():
        raise ValueError("a recommended customer_pkey maps to no customer in dim_customers")
    with phase("write"):
        table = write_ml_table(tessera, "recommendation_candidates", recs, "customer_key, rank")
    ndcg = f"ndcg_at_{params.k}"
    plot = grouped_bar_png(
        {s: {m: evaluation[m][s].get(ndcg, float("nan")) for m in evaluation} for s in SLICES},
        f"NDCG@{params.k} per slice: LightFM hybrid vs baselines (holdout from {split.split_at.date()})",
        f"NDCG@{params.k}",
    )
    return dg.MaterializeResult(
        metadata={
            **table,
            **run_metadata(started, n_interactions),
            **mlflow_run_metadata(settings, logged.run_id, plot, "ndcg_by_slice"),
            "promoted": decision.promoted,
            "seconds_by_phase": dg.MetadataValue.json(phase.seconds),
            "registered_model": settings.mlflow_model_name,
            "challenger_version": decision.challenger_version,
            "champion_version": str(decision.champion_now),
            "gate": decision.summary(),
            "gate_record": dg.MetadataValue.json(decision.record()),
            "gate_users_evaluated": decision.verdict.users,
            "gate_min_users": decision.verdict.min_users,
            "lists_from": decision.lists_from,
            "lists_from_version": str(recs["model_version"].iloc[0]) if len(recs) else "none",
            "mlflow_run_id": logged.run_id,
            "mlflow_model_uri": logged.model_uri,
            # the primary slice only; every slice is in the MLflow run
            **{
                k: dg.MetadataValue.float(float(v))
                for k, v in metrics.items()
                if np.isfinite(v) and not k.startswith(tuple(f"{s}_" for s in SLICES if s != PRIMARY_SLICE))
            },
        }
    )


def skipped_recommender(
    context, tessera: TesseraResource, config, users: pd.DataFrame, items, interactions, internal_keys: dict, reason: str, started: float
) -> dg.MaterializeResult:
    """No model can be trained or evaluated on this data (`reason`): nothing is registered; the
    lists come from the champion under today's rules if there is one, else from popularity
    without a model (popular_without_model), so everything downstream still publishes. The
    reason is the asset's `skipped_reason` metadata and goes to the run summary (orchestration/run.py)."""
    from mlflow.tracking import MlflowClient

    from ml.registry import champion

    settings = tessera.settings()
    current = champion(MlflowClient(tracking_uri=settings.mlflow_tracking_uri), settings.mlflow_model_name)
    if current is not None and not users.empty and not interactions.empty:
        recs = lists_from_champion(settings, str(current.version), users, items, interactions, config)
        lists_from = "champion"
    else:
        recs = popular_without_model(users, items, interactions, config, "baseline:most_popular")
        lists_from = "baseline:most_popular"
    context.log.warning(f"recommender model skipped: {reason}; {len(recs):,} list rows from {lists_from}")
    recs["customer_key"] = recs["customer_key"].map(internal_keys)
    if recs["customer_key"].isna().any():
        raise ValueError("a recommended customer_pkey maps to no customer in dim_customers")
    table = write_ml_table(tessera, "recommendation_candidates", recs, "customer_key, rank")
    return dg.MaterializeResult(
        metadata={
            **table,
            **run_metadata(started, len(interactions)),
            "skipped_reason": reason,
            "promoted": False,
            "lists_from": lists_from,
            "lists_from_version": str(recs["model_version"].iloc[0]) if len(recs) else "none",
        }
    )


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
        row = con.execute(
            """
            with r as (select * from ml.recommendation_candidates),
            counts as (
                select
                    count(*) filter (where c.customer_key is null) as unknown_customers,
                    count(*) filter (where p.product_id is null or not p.is_active) as inactive_products,
                    count(*) filter (where r.rank < 1 or r.rank > r.top_n) as ranks_out_of_range,
                    count(*) filter (where not c.personalization_consent and r.source <> 'popularity') as personalised_without_consent
                from r
                left join marts.dim_customers as c on c.customer_key = r.customer_key
                left join marts.dim_products as p on p.product_id = r.product_id
            )
            select
                counts.*,
                (select count(*) from (select customer_key from r group by customer_key, top_n having count(*) > top_n)) as over_top_n,
                (select count(*) from (
                    select r.customer_key from r inner join marts.dim_products as p using (product_id)
                    group by r.customer_key, p.category, r.max_per_category having count(*) > r.max_per_category
                )) as over_category_cap
            from counts
            """
        ).fetchall()[0]
    names = (
        "unknown_customers",
        "inactive_or_unknown_products",
        "ranks_out_of_range",
        "personalised_without_consent",
        "customers_over_top_n",
        "customer_categories_over_cap",
    )
    metadata = dict(zip(names, (int(v) for v in row)))
    return dg.AssetCheckResult(passed=not any(metadata.values()), severity=dg.AssetCheckSeverity.ERROR, metadata=metadata)


PROPENSITY_KEY = dg.AssetKey(["ml", "propensity_scores"])
PROPENSITY_EXPERIMENT = "tessera-propensity"
SNAPSHOTS_SQL = f"""
select f.*, l.purchased_next_30d, l.churned_next_30d
from marts.customer_feature_snapshots as f
left join marts.customer_propensity_labels as l using (customer_key, as_of_date)
where f.{NOT_ERASED}
order by f.as_of_date, f.customer_key
"""


class PropensityConfig(dg.Config):
    max_train_rows: int = 100_000  # each fit samples this many labelled customers at most


@dg.asset(
    key=PROPENSITY_KEY,
    deps=gated_deps("customer_feature_snapshots", "customer_propensity_labels"),
    group_name="ml",
    description=(
        "Purchase-in-30-days propensity and churn risk from gradient-boosted trees trained point in time: "
        "features of the oldest labelled snapshot, evaluated out of time on the next one against a "
        "recency-only baseline (AUC, PR-AUC, calibration in MLflow), refit on the latest labelled "
        "snapshot and applied to the current features."
    ),
    kinds={"python", "scikitlearn", "mlflow", "duckdb"},
    owners=["team:data-science"],
    pool=DUCKDB_POOL,
)
def propensity_scores(
    context: dg.AssetExecutionContext, tessera: TesseraResource, config: PropensityConfig
) -> dg.MaterializeResult:
    from ml.propensity import CATEGORICAL_FEATURES, NUMERIC_FEATURES, train_propensity, training_shortfall
    from ml.tracking import log_propensity_run

    started = time.perf_counter()
    settings = tessera.settings()
    with tessera.duckdb(read_only=True) as con:
        frames = con.execute(SNAPSHOTS_SQL).df()
    snapshots = sorted(frames["as_of_date"].unique())
    targets = (
        ("purchased_next_30d", "purchase_propensity_30d", None),
        ("churned_next_30d", "churn_risk_30d", "frequency"),
    )
    if len(snapshots) < 3:
        # thin data: the asset still writes the table (every score null, no run), so the scores
        # and everything else downstream publish; the reason is in the UI and the run summary
        reason = f"need 3 feature snapshots (train, evaluate, current), found {len(snapshots)}"
        latest = frames[frames["as_of_date"] == snapshots[-1]] if snapshots else frames
        return skipped_propensity(context, tessera, latest, targets, {t: reason for t, _, _ in targets}, started)
    train, evaluation, current = (frames[frames["as_of_date"] == d] for d in snapshots[-3:])
    skipped = {
        target: reason for target, _, _ in targets if (reason := training_shortfall(train, evaluation, target)) is not None
    }
    if len(skipped) == len(targets):
        return skipped_propensity(context, tessera, current, targets, skipped, started)
    for target, reason in skipped.items():
        context.log.warning(f"propensity model skipped: {reason}")
    out = current[["customer_key", "as_of_date"]].copy()
    metadata, runs, comparison = {}, {}, {}
    metadata.update({f"{target}/skipped_reason": reason for target, reason in skipped.items()})
    if skipped:
        metadata["skipped_reason"] = "; ".join(skipped.values())
    for target, column, _ in targets:
        if target in skipped:
            out[column] = pd.Series(np.nan, index=out.index, dtype="float64")
            out[f"{column}_run_id"] = pd.Series(pd.NA, index=out.index, dtype="string")
    targets = tuple(t for t in targets if t[0] not in skipped)

    def train_target(target: str, population: str | None):
        scored = current if population is None else current[current[population] > 0]
        return train_propensity(train, evaluation, scored, target, seed=settings.seed, max_train_rows=config.max_train_rows)

    # The two models share nothing: each trains in a thread of its own (scikit-learn's tree code
    # releases the GIL; each fit keeps its one OpenMP thread), with the results of training them
    # one after the other (at 1m: 24.2 s in turn, 18.7 s side by side; issue 9). MLflow logging
    # stays in this thread, in order.
    with ThreadPoolExecutor(max_workers=len(targets), thread_name_prefix="propensity") as workers:
        trained = [workers.submit(train_target, target, population) for target, _, population in targets]
        results = [job.result() for job in trained]
    for (target, column, population), result in zip(targets, results, strict=True):
        logged = log_propensity_run(
            tracking_uri=settings.mlflow_tracking_uri,
            experiment=PROPENSITY_EXPERIMENT,
            artifact_root=mlflow_artifact_root(settings),
            target=target,
            params={
                "model": "HistGradientBoostingClassifier",
                "train_as_of": str(pd.Timestamp(snapshots[-3]).date()),
                "eval_as_of": str(pd.Timestamp(snapshots[-2]).date()),
                "score_as_of": str(pd.Timestamp(snapshots[-1]).date()),
                "features": ",".join(NUMERIC_FEATURES + CATEGORICAL_FEATURES),
                "population": "customers with an earlier order" if population else "all customers",
                "max_train_rows": config.max_train_rows,
            },
            metrics=result.metrics,
            calibration=result.calibration,
            model=result.model,
            tags={"dagster_run_id": context.run_id, "source": "tessera"},
        )
        out = out.merge(result.scores.rename(columns={"score": column}), on="customer_key", how="left")
        out[f"{column}_run_id"] = logged.run_id
        for k, v in result.metrics.items():
            metadata[f"{target}/{k}"] = dg.MetadataValue.float(float(v))
        metadata[f"{target}/mlflow_run_id"] = logged.run_id
        runs[target] = logged.run_id
        comparison[target] = {
            "model AUC": result.metrics["auc"],
            "recency-only AUC": result.metrics["baseline_recency_auc"],
            "model PR-AUC": result.metrics["pr_auc"],
            "recency-only PR-AUC": result.metrics["baseline_recency_pr_auc"],
        }
    table = write_ml_table(tessera, "propensity_scores", out, "customer_key")
    plot = grouped_bar_png(comparison, "Propensity models vs the recency-only baseline (evaluation snapshot)", "score")
    for target, run_id in runs.items():
        linked = mlflow_run_metadata(settings, run_id, plot, "propensity_vs_baseline")
        metadata[f"{target}/mlflow_run"] = linked["mlflow_run"]
    metadata["plot"] = linked["plot"]
    return dg.MaterializeResult(metadata={**table, **run_metadata(started, len(frames)), **metadata})


def skipped_propensity(context, tessera: TesseraResource, current: pd.DataFrame, targets, reasons: dict, started: float):
    """No propensity model can be trained (`reasons` per target): ml.propensity_scores holds the
    current customers with every score and run id null, so publish/customer_scores still
    publishes its RFM values (its check then expects no score at all) and decisioning runs."""
    out = current[["customer_key", "as_of_date"]].copy()
    for _, column, _ in targets:
        out[column] = pd.Series(np.nan, index=out.index, dtype="float64")
        out[f"{column}_run_id"] = pd.Series(pd.NA, index=out.index, dtype="string")
    reason = "; ".join(dict.fromkeys(reasons.values()))
    context.log.warning(f"propensity models skipped: {reason}")
    table = write_ml_table(tessera, "propensity_scores", out, "customer_key")
    return dg.MaterializeResult(
        metadata={
            **table,
            **run_metadata(started, len(current)),
            "skipped_reason": reason,
            **{f"{target}/skipped_reason": r for target, r in reasons.items()},
        }
    )


CLUSTERS_KEY = dg.AssetKey(["ml", "customer_clusters"])
SEGMENTS_EXPERIMENT = "tessera-segments"
NO_ORDER_CLUSTER = (-1, "no order yet: not clustered")


class ClusteringConfig(dg.Config):
    k_min: int = 2
    k_max: int = 8
    fit_sample: int = 50_000  # centroids are fitted on at most this many customers, then all are assigned


@dg.asset(
    key=CLUSTERS_KEY,
    deps=gated_deps("customer_features"),
    group_name="ml",
    description=(
        "K-Means behavioural clusters of customers with at least one order (standardised, log-scaled "
        "features; k chosen by silhouette), each with a description of what sets it apart. "
        "Customers without an order get cluster -1. Tracked in MLflow."
    ),
    kinds={"python", "scikitlearn", "mlflow", "duckdb"},
    owners=["team:data-science"],
    pool=DUCKDB_POOL,
)
def customer_clusters(
    context: dg.AssetExecutionContext, tessera: TesseraResource, config: ClusteringConfig
) -> dg.MaterializeResult:
    from ml.clustering import BEHAVIOURAL_FEATURES, cluster_customers, clustering_shortfall
    from ml.tracking import log_clustering_run

    started = time.perf_counter()
    settings = tessera.settings()
    with tessera.duckdb(read_only=True) as con:
        # only the columns clustering reads: at 1M customers the whole mart is ~40 columns
        columns = ", ".join(["customer_key", *BEHAVIOURAL_FEATURES])
        features = con.execute(
            f"select {columns} from marts.customer_features where {NOT_ERASED} order by customer_key"
        ).df()
    buyers = features[features["frequency"] > 0].reset_index(drop=True)
    others = features.loc[features["frequency"] <= 0, ["customer_key"]].assign(
        cluster_id=NO_ORDER_CLUSTER[0], cluster_description=NO_ORDER_CLUSTER[1]
    )
    if (reason := clustering_shortfall(buyers, config.k_min)) is not None:
        # thin data: every customer keeps cluster -1 with the reason in words, no run; the
        # segments and everything else downstream still publish
        context.log.warning(f"clustering skipped: {reason}")
        unclustered = buyers[["customer_key"]].assign(cluster_id=NO_ORDER_CLUSTER[0], cluster_description=f"not clustered: {reason}")
        out = pd.concat([unclustered, others], ignore_index=True)
        out["clustering_run_id"] = pd.Series(pd.NA, index=out.index, dtype="string")
        table = write_ml_table(tessera, "customer_clusters", out, "customer_key")
        return dg.MaterializeResult(metadata={**table, **run_metadata(started, len(features)), "skipped_reason": reason})
    result = cluster_customers(
        buyers, k_range=range(config.k_min, config.k_max + 1), seed=settings.seed, fit_sample=config.fit_sample
    )
    run_id = log_clustering_run(
        tracking_uri=settings.mlflow_tracking_uri,
        experiment=SEGMENTS_EXPERIMENT,
        artifact_root=mlflow_artifact_root(settings),
        params={
            "algorithm": "KMeans",
            "k_min": config.k_min,
            "k_max": config.k_max,
            "chosen_k": result.k,
            "seed": settings.seed,
            "features": ",".join(BEHAVIOURAL_FEATURES),
            "customers_clustered": len(buyers),
            "fit_sample": min(config.fit_sample, len(buyers)),
        },
        silhouette_by_k=result.silhouette_by_k,
        sizes=result.sizes,
        profiles=result.profiles,
        z_profiles=result.z_profiles,
        descriptions=result.descriptions,
        tags={"dagster_run_id": context.run_id, "source": "tessera"},
    )
    out = pd.concat([result.labels, others], ignore_index=True).assign(clustering_run_id=run_id)
    table = write_ml_table(tessera, "customer_clusters", out, "customer_key")
    plot = grouped_bar_png(
        {f"k={k}": {"silhouette": v} for k, v in result.silhouette_by_k.items()},
        f"Silhouette per number of clusters (chosen k={result.k})",
        "silhouette",
    )
    return dg.MaterializeResult(
        metadata={
            **table,
            **run_metadata(started, len(features)),
            **mlflow_run_metadata(settings, run_id, plot, "silhouette_by_k"),
            "mlflow_run_id": run_id,
            "chosen_k": result.k,
            "silhouette_by_k": dg.MetadataValue.json({str(k): round(v, 4) for k, v in result.silhouette_by_k.items()}),
            "clusters": dg.MetadataValue.md(
                "| cluster | size | what sets it apart |\n| --- | --- | --- |\n"
                + "\n".join(f"| {c} | {result.sizes[c]} | {d} |" for c, d in result.descriptions.items())
            ),
        }
    )
