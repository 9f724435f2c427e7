"""The published lists: each customer's top k under the published rules (already-bought products
left out, inactive products never, a cap per category, no personal history without consent), from
the model just trained, from a registered champion, or from popularity alone."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl
import scipy.sparse as sp

from ml.rec_baselines import MostPopular, RecentlyPopular
from ml.rec_families import LinearScores, family_bundle, family_history, family_scores
from ml.recommender import (
    FeatureSpace,
    RecData,
    RecommenderParams,
    as_pandas,
    as_polars,
    index_of,
    pairs_matrix,
    purchased_matrix,
    recommend,
    text_codes,
    unseen_user_rows,
)

# marts.customer_rec_user_features, point in time: demographics, then behaviour as of a snapshot
STATIC_USER_FEATURES = ["gender", "country_code", "region", "age_band"]
USER_FEATURES = [*STATIC_USER_FEATURES, "r_bin", "f_bin", "m_bin", "rfm_segment", "last_device"]
ITEM_FEATURES = ["category", "brand", "price_band"]


@dataclass(frozen=True)
class ListRules:
    """The rules on the published list; the defaults are the published contract."""

    k: int = RecommenderParams.k  # top k per customer
    max_per_category: int = 3  # diversity cap: at most this many products of one category
    exclude_bought: bool = True  # leave out products the customer already bought


def constant_column(value: str, n: int) -> pd.Categorical:
    """`value` on each of `n` rows, as a categorical: one byte a row where a text column repeats
    the string (10M rows at 1M customers)."""
    return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=pd.Index([value]))


def usable_features(profile: pl.DataFrame) -> np.ndarray:
    """Customers with at least one known demographic: a customer without history has no
    behaviour to speak of, so only these can be ranked from features."""
    known = [~pl.col(c).cast(pl.String).fill_null("unknown").is_in(["unknown", "U"]) for c in STATIC_USER_FEATURES]
    return profile.select(pl.any_horizontal(known)).to_series().to_numpy()


def in_order(frame: pl.DataFrame, key: str, ids: list[str]) -> pl.DataFrame:
    """The row of `frame` for each of `ids` (its `key` as text), in the order of `ids`; a row of
    nulls for an id `frame` lacks."""
    wanted = pl.DataFrame({key: ids}, schema={key: pl.String})
    return wanted.join(frame.with_columns(pl.col(key).cast(pl.String)), on=key, how="left", maintain_order="left")


def ranked_lists(
    model,
    data,
    profile: pl.DataFrame,
    cold: np.ndarray,
    bought: sp.csr_matrix,
    popularity,
    items,
    rules: ListRules,
    zero_identity=True,
    everyone_popular=False,
    scorer=None,
):
    """The rules on the published list: top `k` per customer, already-bought products left out
    (configurable), inactive products never, at most `max_per_category` per category. `cold`
    customers are ranked from their features; without usable features, or without
    personalisation consent, customers get the most popular products (their history unused).
    `profile` is aligned with data.users.ids; `bought` with (users, items). zero_identity=False
    when the user rows have no identity feature to drop (ml.recommender.recommend).
    everyone_popular=True: every customer gets the `popularity` ranking (a baseline's lists, when
    the gate publishes no model), with what they bought left out where they consented."""
    consent = profile["personalization_consent"].fill_null(True).cast(pl.Boolean).to_numpy()
    if everyone_popular:
        popular = np.ones(len(consent), dtype=bool)
    elif scorer is not None:  # another family ranks by history only: no history, the popular list
        popular = ~consent | cold
    else:
        popular = ~consent | (cold & ~usable_features(profile))
    exclude = bought if rules.exclude_bought else sp.csr_matrix(bought.shape, dtype=np.float32)
    personal = consent if everyone_popular else ~popular
    exclude = sp.diags(personal.astype(np.float32)) @ exclude  # no personal history without consent
    by_id = in_order(items, "product_id", data.items.ids)
    active = by_id["is_active"].fill_null(False).cast(pl.Boolean).to_numpy()
    codes, uniques = text_codes(by_id["category"])
    recs = recommend(
        model,
        data,
        exclude.tocsr(),
        active,
        rules.k,
        cold_users=cold & ~popular,
        popular_users=popular,
        popularity=popularity,
        item_group=codes,
        max_per_group=rules.max_per_category,
        zero_identity=zero_identity,
        scorer=scorer,
    )
    # product_id's codes are item indices (recommend): the category by code, as a categorical too
    recs["category"] = pd.Categorical.from_codes(
        codes[recs["product_id"].cat.codes.to_numpy()], categories=pd.Index(uniques)
    )
    return recs.assign(top_n=rules.k, max_per_category=rules.max_per_category)


def published_candidates(
    model, data, users: pl.DataFrame | pd.DataFrame, items: pl.DataFrame | pd.DataFrame, rules: ListRules
) -> pd.DataFrame:
    """Every customer's list from the model just trained (ranked_lists); customers without any
    interaction are cold."""
    profile = in_order(as_polars(users), "customer_key", data.users.ids)
    popularity = MostPopular(data.interactions, len(data.items.ids)).scores
    return ranked_lists(
        model, data, profile, ~has_history(data), purchased_matrix(data), popularity, as_polars(items), rules
    )


def family_candidates(
    bundle: dict,
    data: RecData,
    users: pl.DataFrame | pd.DataFrame,
    items: pl.DataFrame | pd.DataFrame,
    rules: ListRules,
) -> pd.DataFrame:
    """Every customer's list from an EASE or ALS bundle (ml.rec_families.family_bundle) under the
    published rules, scored from each customer's history in `data` (which must index items as the
    bundle does); customers without history, or without consent, get the popular list."""
    if [str(i) for i in bundle["item_ids"]] != list(data.items.ids):
        raise ValueError("the bundle's items are not the data's items in the same order")
    n_users, n_items = len(data.users.ids), len(data.items.ids)
    profile = in_order(as_polars(users), "customer_key", data.users.ids)
    scorer = family_scores(bundle, family_history(bundle, data.interactions, n_users, n_items), data.interactions)
    popularity = MostPopular(data.interactions, n_items).scores
    return ranked_lists(
        None,
        data,
        profile,
        ~has_history(data),
        purchased_matrix(data),
        popularity,
        as_polars(items),
        rules,
        scorer=scorer,
    )


def family_lists(model, data: RecData, users, items, rules: ListRules, params: RecommenderParams) -> pd.DataFrame:
    """Every customer's list from the model just trained, whichever family it is."""
    if params.family == "lightfm_hybrid":
        return published_candidates(model, data, users, items, rules)
    return family_candidates(published_bundle(model, data, params), data, users, items, rules)


def published_bundle(model, data: RecData, params: RecommenderParams) -> dict:
    """The registered artifact of the model just trained (model_bundle or family_bundle)."""
    if params.family == "lightfm_hybrid":
        return model_bundle(model, data, params.k)
    return family_bundle(params.family, model, list(data.items.ids), params.k)


def baseline_candidates(
    model, data, users: pl.DataFrame, items: pl.DataFrame, rules: ListRules, baseline: str, recent_days: int
) -> pd.DataFrame:
    """Every customer's list from a simple baseline (ml/rec_baselines.py) over all interactions,
    under the published rules: what the gate publishes when no model may be (no champion yet and
    the first model not shown to be as good as the baseline). Rows have source 'popularity'."""
    n_items = len(data.items.ids)
    if baseline == "most_popular":
        popularity = MostPopular(data.interactions, n_items).scores
    elif baseline == "recently_popular":
        popularity = RecentlyPopular(data.interactions, n_items, window_days=recent_days).scores
    else:
        raise ValueError(f"no published fallback for baseline {baseline!r}")
    profile = in_order(users, "customer_key", data.users.ids)
    return ranked_lists(
        model,
        data,
        profile,
        ~has_history(data),
        purchased_matrix(data),
        popularity,
        items,
        rules,
        everyone_popular=True,
        scorer=_no_scores(len(data.users.ids), n_items),  # every row is the popularity ranking
    )


def _no_scores(n_users: int, n_items: int) -> LinearScores:
    """Zero-dimensional scores: for lists where every customer gets the popularity ranking,
    whichever family was trained."""
    return LinearScores(
        np.zeros((n_users, 0), np.float32),
        np.zeros((0, n_items), np.float32),
        np.zeros(n_items, np.float32),
        np.zeros(n_users, np.float32),
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


def popular_without_model(
    users: pl.DataFrame | pd.DataFrame,
    items: pl.DataFrame | pd.DataFrame,
    interactions: pl.DataFrame | pd.DataFrame,
    rules: ListRules,
    label: str,
) -> pd.DataFrame:
    """With no model to rank with (thin data, no champion): one list for every customer, the
    active products by distinct buyers, then distinct users with any interaction (MostPopular),
    at most `max_per_category` per category; nothing personal is used. No interaction or no
    active product: no rows."""
    users, items, interactions = as_polars(users), as_polars(items), as_polars(interactions)
    active = items.filter(pl.col("is_active").fill_null(False).cast(pl.Boolean)).sort("product_id")
    if interactions.is_empty() or active.is_empty() or users.is_empty():
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in CANDIDATE_COLUMNS.items()})
    product_ids = active["product_id"].cast(pl.String).to_list()
    index = {p: n for n, p in enumerate(product_ids)}
    inter = (
        interactions.select(
            pl.col("customer_key").cast(pl.String).alias("u"), pl.col("interaction_type").cast(pl.String)
        )
        .with_columns(i=pl.Series(index_of(interactions["product_id"], index)))
        .filter(pl.col("i") >= 0)
    )
    scores = MostPopular(inter.to_pandas(), len(active)).scores
    order = np.lexsort((np.arange(len(active)), -scores))  # best first, ties by product id
    category = np.asarray(active["category"].cast(pl.String).fill_null("unknown").to_list(), dtype=object)
    picked, per_category = [], {}
    for i in order:
        if per_category.get(category[i], 0) < rules.max_per_category:
            picked.append(i)
            per_category[category[i]] = per_category.get(category[i], 0) + 1
        if len(picked) == rules.k:
            break
    keys = np.asarray(users["customer_key"].cast(pl.String).to_list(), dtype=object)
    n, m = len(keys), len(picked)
    return pd.DataFrame(
        {
            "customer_key": np.repeat(keys, m),
            "rank": np.tile(np.arange(1, m + 1, dtype=np.int64), n),
            "product_id": np.tile(np.asarray(product_ids, dtype=object)[picked], n),
            "score": np.tile(scores[picked].astype(np.float64), n),
            "source": "popularity",
            "category": np.tile(category[picked], n),
            "top_n": np.int64(rules.k),
            "max_per_category": np.int64(rules.max_per_category),
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


def champion_lists_for(
    bundle: dict,
    feature_weight: float,
    customers: pl.DataFrame | pd.DataFrame,
    items: pl.DataFrame | pd.DataFrame,
    interactions: pl.DataFrame | pd.DataFrame,
    rules: ListRules,
    phase=contextlib.nullcontext,
) -> pd.DataFrame:
    """Today's lists from a registered model (its MLflow bundle), under today's rules: customers
    the model was trained on keep their trained rows (identity and features, as in training);
    customers it never saw, or saw without history (bundle "cold_user_ids"), are ranked from
    today's features in the model's own feature space (ml.recommender.unseen_user_rows); the
    popularity fallback, consent, purchases and active products are today's. Products added to
    the catalogue since the model was trained are cold items: scored from their features alone
    (category, brand, price band values the model knows), as the evaluation's cold-item slice
    scores them, so they can be recommended before the next retrain (a product none of whose
    feature values the model knows scores 0 from the item side)."""
    # `phase(name)` times each part (bench/scale.py reads them from the asset's seconds_by_phase)
    with phase("champion_user_rows"):
        users_space, warm = _customer_rows(bundle, feature_weight, as_polars(customers))
    items, interactions = as_polars(items), as_polars(interactions)
    with phase("champion_interactions"):
        items_space = items_with_new_products(bundle, items, feature_weight)
        inter = interactions.with_columns(
            u=pl.Series(index_of(interactions["customer_key"], users_space.id_map)),
            i=pl.Series(index_of(interactions["product_id"], items_space.id_map)),
        )
        mine = as_pandas(inter.filter((pl.col("u") >= 0) & (pl.col("i") >= 0)))
        data = RecData(users=users_space, items=items_space, interactions=mine)
        shape = (len(users_space.ids), len(items_space.ids))
        bought = pairs_matrix(mine[mine["interaction_type"] == "purchase"], shape)
        popularity = MostPopular(mine, shape[1]).scores
    with phase("champion_rank"):
        # the customers are the users, in order
        return ranked_lists(
            bundle["model"], data, as_polars(customers), ~warm, bought, popularity, items, rules, zero_identity=False
        )


def _customer_rows(bundle: dict, feature_weight: float, customers: pl.DataFrame) -> tuple[FeatureSpace, np.ndarray]:
    """Today's customers in the model's user feature space: their trained rows, or rows from
    today's features for those it never saw or saw without history; and which are warm."""
    keys = customers["customer_key"].cast(pl.String).to_list()
    names = bundle["user_feature_names"]
    cold_ids = pl.Series(sorted(bundle.get("cold_user_ids", ())), dtype=pl.String)
    trained_cold = customers["customer_key"].cast(pl.String).is_in(cold_ids.implode()).to_numpy()
    row_in_model = np.where(trained_cold, -1, index_of(customers["customer_key"], bundle["user_id_map"]))
    warm = row_in_model >= 0
    pick = sp.csr_matrix(
        (np.ones(int(warm.sum()), dtype=np.float32), (np.flatnonzero(warm), row_in_model[warm])),
        shape=(len(keys), bundle["user_features"].shape[0]),
    )
    unseen = sp.diags((~warm).astype(np.float32)) @ unseen_user_rows(names, customers, feature_weight)
    rows = (pick @ bundle["user_features"] + unseen).tocsr().astype(np.float32)
    return FeatureSpace(keys, {k: n for n, k in enumerate(keys)}, names, rows), warm


def _indexed(
    bundle: dict, users: FeatureSpace, item_feature_names, item_features, interactions: pl.DataFrame
) -> RecData:
    """RecData of today's customers (`users`) and the bundle's items, with the interactions of
    those customers with those items (others dropped)."""
    item_ids = [str(i) for i in bundle["item_ids"]]
    items_space = FeatureSpace(item_ids, {k: n for n, k in enumerate(item_ids)}, item_feature_names, item_features)
    inter = interactions.with_columns(
        u=pl.Series(index_of(interactions["customer_key"], users.id_map)),
        i=pl.Series(index_of(interactions["product_id"], items_space.id_map)),
    )
    mine = as_pandas(inter.filter((pl.col("u") >= 0) & (pl.col("i") >= 0)))
    return RecData(users=users, items=items_space, interactions=mine)


def champion_family_lists(
    bundle: dict,
    customers: pl.DataFrame | pd.DataFrame,
    items: pl.DataFrame | pd.DataFrame,
    interactions: pl.DataFrame | pd.DataFrame,
    rules: ListRules,
) -> pd.DataFrame:
    """Today's lists from a registered EASE or ALS champion: every customer scored from today's
    history (new purchases count at once; no customer's row is kept in the bundle), under today's
    rules. Products the champion never saw are not ranked until a retrain."""
    customers, items, interactions = as_polars(customers), as_polars(items), as_polars(interactions)
    keys = customers["customer_key"].cast(pl.String).to_list()
    empty = sp.csr_matrix((len(keys), 0), dtype=np.float32)
    users_space = FeatureSpace(keys, {k: n for n, k in enumerate(keys)}, [], empty)
    no_features = sp.csr_matrix((len(bundle["item_ids"]), 0), dtype=np.float32)
    data = _indexed(bundle, users_space, [], no_features, interactions)
    return family_candidates(bundle, data, customers, items, rules)


def items_with_new_products(bundle: dict, items: pl.DataFrame, feature_weight: float) -> FeatureSpace:
    """The model's item feature space, and after its items a row for each product of today's
    catalogue it was not trained on: that product's feature values the model knows, with no
    identity (ml.recommender.unseen_user_rows, which builds such rows for any entity)."""
    item_ids = [str(i) for i in bundle["item_ids"]]
    known = pl.Series(item_ids, dtype=pl.String)
    new = items.filter(~pl.col("product_id").cast(pl.String).is_in(known.implode())).sort("product_id")
    new_ids = new["product_id"].cast(pl.String).to_list()
    matrix = bundle["item_features"]
    if new_ids:
        rows = unseen_user_rows(bundle["item_feature_names"], new, feature_weight)
        matrix = sp.vstack([matrix, rows], format="csr").astype(np.float32)
        item_ids = item_ids + new_ids
    return FeatureSpace(item_ids, {k: n for n, k in enumerate(item_ids)}, bundle["item_feature_names"], matrix)


def training_fingerprint(*frames: pl.DataFrame | pd.DataFrame) -> str:
    """A hash of the published model's training tables (interactions, user and item features):
    the same configuration on the same fingerprint is an identical retrain (ml/promotion.py).
    The hash is pandas' of the frames as pandas read them (as_pandas), so a champion's logged
    fingerprint still matches its training data."""
    total = 0
    for frame in frames:
        frame = as_pandas(frame) if isinstance(frame, pl.DataFrame) else frame
        hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
        total = (total * 1_000_003 + int(hashed.sum(dtype=np.uint64)) + len(frame)) % 2**64
    return f"{total:016x}"
