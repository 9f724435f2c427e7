"""Honest offline evaluation of the recommender: a time-ordered split, full-catalogue rankings,
baselines on the same split, and separate warm and cold-start slices.

Works on any interactions table (customer_key, product_id, interaction_type, occurred_at) plus
optional user and item feature tables; nothing here needs Dagster or the DuckDB file.

Slices (every model ranks the whole catalogue, minus what the slice excludes):

- ``warm`` (**primary**): users with at least one training interaction; the relevant items are
  their test-period purchases of items they had not bought in training, and items they bought in
  training are excluded from the ranking. This is the question a shop asks: what new item will
  this customer buy?
- ``warm_all``: the same users, every test-period purchase relevant, nothing excluded (re-buys
  count, so models that recommend the already-bought score higher).
- ``cold_users``: users with no training interaction at all; only their features can rank.
- ``cold_items``: warm users, ranked over the items nobody touched in training only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl
import scipy.sparse as sp

from ml.rec_baselines import ItemItemCooccurrence, MostPopular, RecentlyPopular
from ml.rec_families import fit_scorer
from ml.rec_features import ColumnChoice, TypingOptions, type_features
from ml.rec_metrics import MetricAccumulator
from ml.recommender import (
    LightFMScorer,
    RecData,
    RecommenderParams,
    as_polars,
    fit,
    ids_only,
    pairs_matrix,
    with_feature_weight,
)

# Scores per evaluation chunk (users x items): 2M float64 = 16 MB, and user_metrics makes a few
# same-sized copies (exclusion, masks, partition). 2048 users x 50,000 items made GBs.
EVAL_CELLS = 2**21

PRIMARY_SLICE = "warm"
SLICES = ("warm", "warm_all", "cold_users", "cold_items")
MODELS = (
    "lightfm_hybrid",
    "lightfm_ids_only",
    "most_popular",
    "recently_popular",
    "item_item",
    "ease",
    "ease_recent",
    "als",
)


@dataclass
class Split:
    train: pd.DataFrame  # interactions with u, i, interaction_type, occurred_at
    test: pd.DataFrame  # held-out purchases (u, i)
    split_at: pd.Timestamp | None  # None for an explicit train/test pair

    def describe(self) -> dict:
        return {
            "split": "explicit" if self.split_at is None else f"time, test from {self.split_at.date()}",
            "train_interactions": len(self.train),
            "test_purchases": len(self.test),
        }


def holdout_start(occurred_at: pd.Series | pl.Series, holdout_days: int) -> pd.Timestamp:
    """Midnight starting the last `holdout_days` calendar days of `occurred_at` (a polars column
    is already datetimes: its maximum is taken in polars, not by converting every row)."""
    if holdout_days < 1:
        raise ValueError(f"holdout_days must be >= 1, got {holdout_days}")
    latest = (
        pd.Timestamp(occurred_at.max()) if isinstance(occurred_at, pl.Series) else pd.to_datetime(occurred_at).max()
    )
    return latest.normalize() - pd.Timedelta(days=holdout_days - 1)


def features_as_of(frame: pd.DataFrame, key: str, at: pd.Timestamp | None) -> pd.DataFrame:
    """Point-in-time features. A table with an ``as_of_date`` column holds a row per key per
    snapshot, each built only from inputs before its as_of_date (marts.customer_rec_user_features);
    this keeps, per key, the latest row with as_of_date <= `at` (None: the latest row), so a model
    evaluated on a holdout from `at` sees no feature computed from the holdout. Keys with no row
    by `at` are dropped: they get no features ('unknown') when merged onto the user list. A table
    without ``as_of_date`` is static and returned as is."""
    if "as_of_date" not in frame.columns:
        return frame
    snapshot = pd.to_datetime(frame["as_of_date"])
    keep = frame if at is None else frame[snapshot <= pd.Timestamp(at)]
    keep = keep.assign(_as_of=pd.to_datetime(keep["as_of_date"]))
    keep = keep.sort_values([key, "_as_of"], kind="stable").drop_duplicates(key, keep="last")
    return keep.drop(columns=["as_of_date", "_as_of"]).reset_index(drop=True)


def holdout_shortfall(interactions: pd.DataFrame, holdout_days: int) -> str | None:
    """Why a `holdout_days` time split of these interactions cannot evaluate a model (no
    interaction, no training row before the holdout, no purchase in it), or None when it can.
    The recommender asset skips its model with this reason instead of failing (thin data)."""
    if len(interactions) == 0:  # a pandas or a polars frame
        return "no customer-product interaction yet"
    split_at = holdout_start(interactions["occurred_at"], holdout_days)
    before = interactions["occurred_at"] < split_at
    train = int(before.sum())
    test = int((~before & (interactions["interaction_type"] == "purchase")).sum())
    if train == 0 or test == 0:
        return (
            f"a {holdout_days}-day holdout from {split_at.date()} leaves {train} training interactions "
            f"and {test} purchases to test on: a model cannot be evaluated"
        )
    return None


def time_split(data: RecData, holdout_days: int) -> Split:
    """Train on everything before the last `holdout_days` calendar days, test on purchases in them."""
    inter = data.interactions
    if reason := holdout_shortfall(inter, holdout_days):
        raise ValueError(reason)
    split_at = holdout_start(inter["occurred_at"], holdout_days)
    train = inter[inter["occurred_at"] < split_at]
    test = inter[(inter["occurred_at"] >= split_at) & (inter["interaction_type"] == "purchase")]
    return Split(train=train, test=test, split_at=split_at)


def validation_split(data: RecData, split: Split, days: int) -> tuple[RecData, Split] | None:
    """The validation split carved from a split's training period: train' = all but its last
    `days` calendar days, validation = purchases in them. Model selection runs on it, so the test
    is never used to choose. None when the training period cannot be carved (holdout_shortfall)."""
    inner = RecData(users=data.users, items=data.items, interactions=split.train)
    if holdout_shortfall(split.train, days) is not None:
        return None
    return inner, time_split(inner, days)


def explicit_split(data: RecData, test_keys: pd.DataFrame) -> Split:
    """A published train/test pair: `data.interactions` is the training file; `test_keys` holds the
    test file's (customer_key, product_id) rows (purchases only when it has interaction_type)."""
    test = test_keys
    if "interaction_type" in test:
        test = test[test["interaction_type"] == "purchase"]
    test = test.assign(
        u=test["customer_key"].astype(str).map(data.users.id_map),
        i=test["product_id"].astype(str).map(data.items.id_map),
    )
    unknown = test["u"].isna() | test["i"].isna()
    if unknown.all():
        raise ValueError("no test row names a known customer and product")
    test = test[~unknown].astype({"u": np.int64, "i": np.int64})
    return Split(train=data.interactions, test=test, split_at=None)


def seen(train: pd.DataFrame, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the users and the items with at least one training interaction."""
    users = np.zeros(shape[0], dtype=bool)
    users[train["u"].to_numpy()] = True
    items = np.zeros(shape[1], dtype=bool)
    items[train["i"].to_numpy()] = True
    return users, items


@dataclass
class SliceSpec:
    users: np.ndarray
    positives: sp.csr_matrix  # users x items, rows indexed like the full user space
    exclude: sp.csr_matrix


def slices(data: RecData, split: Split, max_users: int | None = None, seed: int = 0) -> dict[str, SliceSpec]:
    shape = (len(data.users.ids), len(data.items.ids))
    train, test = split.train, split.test
    bought = pairs_matrix(train[train["interaction_type"] == "purchase"], shape)
    all_test = pairs_matrix(test, shape)
    warm_users, warm_items = seen(train, shape)
    new_test = all_test - all_test.multiply(bought)
    new_test.eliminate_zeros()
    nothing = sp.csr_matrix(shape, dtype=np.float32)
    # the cold-item slice ranks cold items only: evaluate_split blanks the warm ones per chunk
    cold_item_positives = new_test.multiply(sp.csr_matrix(~warm_items[None, :])).tocsr()

    def users_with(m: sp.csr_matrix, mask: np.ndarray) -> np.ndarray:
        has = np.diff(m.indptr) > 0
        users = np.flatnonzero(has & mask)
        if max_users and len(users) > max_users:  # a seeded sample, in user order
            users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
        return users

    return {
        "warm": SliceSpec(users_with(new_test, warm_users), new_test.tocsr(), bought),
        "warm_all": SliceSpec(users_with(all_test, warm_users), all_test, nothing),
        "cold_users": SliceSpec(users_with(all_test, ~warm_users), all_test, nothing),
        "cold_items": SliceSpec(users_with(cold_item_positives, warm_users), cold_item_positives, bought),
    }


def item_popularity(train: pd.DataFrame, n_items: int) -> np.ndarray:
    """Share of training users who touched each item (for novelty)."""
    pairs = train[["u", "i"]].drop_duplicates()
    users = max(pairs["u"].nunique(), 1)
    return np.bincount(pairs["i"], minlength=n_items) / users


def build_scorers(data: RecData, split: Split, params: RecommenderParams, models=MODELS) -> dict:
    shape = (len(data.users.ids), len(data.items.ids))
    train = split.train
    warm_users, warm_items = seen(train, shape)
    reference = train["occurred_at"].max()
    scorers = {}
    for name in models:
        if name == "lightfm_hybrid":
            hybrid = with_feature_weight(data, params.feature_weight)
            model = fit(hybrid, train, params, reference=reference)
            scorers[name] = LightFMScorer(model, hybrid, cold_users=~warm_users, cold_items=~warm_items)
        elif name == "lightfm_ids_only":
            plain = ids_only(data)
            model = fit(plain, train, params, reference=reference)
            scorers[name] = LightFMScorer(model, plain)
        elif name == "most_popular":
            scorers[name] = MostPopular(train, shape[1])
        elif name == "recently_popular":
            scorers[name] = RecentlyPopular(train, shape[1], window_days=params.recent_days)
        elif name == "item_item":
            scorers[name] = ItemItemCooccurrence(train, shape[0], shape[1], weights=params.weight_of())
        elif name in ("ease", "ease_recent", "als"):
            scorers[name] = fit_scorer(name, train, *shape, params)
        else:
            raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return scorers


def evaluate_split(
    data: RecData,
    split: Split,
    params: RecommenderParams,
    models=MODELS,
    chunk: int | None = None,
    scorers: dict | None = None,
    only: tuple[str, ...] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """metrics[model][slice] -> {precision_at_k, recall_at_k, ndcg_at_k, map_at_k, auc,
    coverage_at_k, novelty_at_k, users} for every model on every slice (or the slices `only`
    names), same split, same k.

    Users are scored `chunk` at a time; by default as many as make EVAL_CELLS scores, so the
    dense (users x items) blocks and the metrics' copies of them stay in the tens of MB whatever
    the catalogue (the metrics do not depend on the chunking). A slice without users has
    users = 0 and NaN means (see loggable_metrics)."""
    return evaluate_per_user(data, split, params, models, chunk, scorers, only)[0]


def evaluate_per_user(
    data: RecData,
    split: Split,
    params: RecommenderParams,
    models=MODELS,
    chunk: int | None = None,
    scorers: dict | None = None,
    only: tuple[str, ...] | None = None,
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, dict[str, pd.Series]]]:
    """evaluate_split's metrics, and per_user[model][slice]: each evaluated user's NDCG@k (a
    Series indexed by user index, ascending). Every model is scored on the same users of a
    slice, so two models' Series pair up user by user (the promotion gate, ml/promotion.py)."""
    n_items = len(data.items.ids)
    chunk = chunk or max(16, min(2048, EVAL_CELLS // max(n_items, 1)))
    popularity = item_popularity(split.train, n_items)
    n_train_users = max(split.train["u"].nunique(), 1)
    specs = slices(data, split, params.eval_max_users, params.seed)
    if only is not None:
        if unknown := sorted(set(only) - set(specs)):
            raise ValueError(f"no evaluation slice {unknown}; the slices: {list(specs)}")
        specs = {name: spec for name, spec in specs.items() if name in only}
    _, warm_items = seen(split.train, (len(data.users.ids), n_items))
    scorers = scorers or build_scorers(data, split, params, models)
    out: dict[str, dict[str, dict[str, float]]] = {}
    per_user: dict[str, dict[str, pd.Series]] = {}
    for name, scorer in scorers.items():
        out[name], per_user[name] = {}, {}
        for slice_name, spec in specs.items():
            acc = MetricAccumulator(params.k, n_items, popularity, min_popularity=1.0 / n_train_users)
            for start in range(0, len(spec.users), chunk):
                idx = spec.users[start : start + chunk]
                scores = scorer(idx)
                if slice_name == "cold_items":
                    scores[:, warm_items] = -np.inf
                acc.add(scores, spec.positives[idx], spec.exclude[idx], users=idx)
            out[name][slice_name] = acc.result()
            users, ndcg = acc.per_user("ndcg")
            per_user[name][slice_name] = pd.Series(
                ndcg, index=pd.Index(users, name="u"), name=f"ndcg_at_{params.k}"
            ).sort_index()
    return out, per_user


def loggable_metrics(by_slice: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """One model's metrics per slice, without the slices no user was evaluated on and without
    undefined (NaN) values: an empty slice has no metrics to log, only NaN means (~40
    NaN metrics per run once reached MLflow)."""
    return {
        slice_name: {k: float(v) for k, v in metrics.items() if np.isfinite(v)}
        for slice_name, metrics in by_slice.items()
        if metrics.get("users", 0) > 0
    }


def empty_slices(evaluation: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """The slices no user was evaluated on (the same for every model), in SLICES order."""
    return [
        s for s in SLICES if all(by_slice[s].get("users", 0) == 0 for by_slice in evaluation.values() if s in by_slice)
    ]


def metric_table(metrics: dict[str, dict[str, dict[str, float]]], k: int, slice_name: str = PRIMARY_SLICE) -> str:
    """A Markdown table of every model on one slice."""
    cols = [
        f"precision_at_{k}",
        f"recall_at_{k}",
        f"ndcg_at_{k}",
        f"map_at_{k}",
        "auc",
        f"coverage_at_{k}",
        f"novelty_at_{k}",
        "users",
    ]
    lines = ["| model | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
    for model, by_slice in metrics.items():
        m = by_slice[slice_name]
        cells = [f"{int(m[c])}" if c == "users" else f"{m[c]:.4f}" for c in cols]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def read_table(path) -> pd.DataFrame:
    """CSV or Parquet, by extension."""
    from pathlib import Path

    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if path.suffix.lower() in (".csv", ".txt"):
        return pd.read_csv(path)
    raise ValueError(f"{path}: expected a .csv or .parquet file")


def prepare_tables(*args, **kwargs) -> RecData:
    """RecData from plain tables: typed_tables (same arguments) without its report of the feature
    columns' typing."""
    return typed_tables(*args, **kwargs)[0]


def typed_tables(
    interactions: pd.DataFrame,
    user_features: pd.DataFrame | pl.DataFrame | None = None,
    item_features: pd.DataFrame | pl.DataFrame | None = None,
    extra_interactions: pd.DataFrame | None = None,
    as_of: pd.Timestamp | None = None,
    typing: TypingOptions | None = None,
    sources: tuple[str, str] = ("user features", "item features"),
) -> tuple[RecData, list[ColumnChoice]]:
    """RecData from plain tables, and what each feature column became. Interactions need
    customer_key and product_id (interaction_type defaults to 'purchase'; occurred_at is needed
    for a time split); feature tables are keyed by customer_key / product_id and every other
    column is typed by ml.rec_features (categorical, multi-hot list, quantile buckets, or refused
    as free text; `typing` holds the thresholds and the columns to drop), `sources` naming the two
    tables (their files) in errors. Users and items are the union of those seen anywhere
    (extra_interactions: e.g. a test file). A feature table with an ``as_of_date`` column is
    point-in-time: its rows as of `as_of` are used (features_as_of; pass evaluation_as_of(...) so
    the holdout cannot leak in)."""
    from ml.recommender import build_data

    typing = typing or TypingOptions()

    def normalise(frame: pd.DataFrame, name: str) -> pd.DataFrame:
        missing = {"customer_key", "product_id"} - set(frame.columns)
        if missing:
            raise ValueError(f"{name} lacks column(s) {sorted(missing)}")
        frame = frame.copy()
        frame["customer_key"] = frame["customer_key"].astype(str)
        frame["product_id"] = frame["product_id"].astype(str)
        if "interaction_type" not in frame:
            frame["interaction_type"] = "purchase"
        if "occurred_at" not in frame:
            frame["occurred_at"] = pd.NaT
        frame["occurred_at"] = pd.to_datetime(frame["occurred_at"])
        return frame

    inter = normalise(interactions, "interactions")
    extra = normalise(extra_interactions, "test interactions") if extra_interactions is not None else inter.iloc[:0]
    choices: list[ColumnChoice] = []

    def with_features(key: str, features, table: str, source: str) -> tuple[pl.DataFrame, list[str]]:
        distinct = pd.unique(pd.concat([inter[key], extra[key]]))
        keys = pl.Series(key, np.asarray(distinct, dtype=object), dtype=pl.String)
        if features is None:
            return keys.to_frame(), []
        if key not in features.columns:
            raise ValueError(f"{source} lacks its key column {key!r}")
        if "as_of_date" in features.columns:
            features = features_as_of(
                features.to_pandas() if isinstance(features, pl.DataFrame) else features, key, as_of
            )
        frame = (
            as_polars(features).with_columns(pl.col(key).cast(pl.String)).unique(key, keep="first", maintain_order=True)
        )
        if not frame[key].is_in(keys.implode()).any():
            raise ValueError(
                f"{source}: none of its {len(frame):,} {key} values is in the interactions (e.g. "
                f"{frame[key].head(1).to_list()} there, {keys.head(1).to_list()} in the interactions): are the keys "
                "written the same way (123 vs 123.0)?"
            )
        typed = type_features(frame, key, table, typing, source=source)
        choices.extend(typed.choices)
        return keys.to_frame().join(typed.frame, on=key, how="full", coalesce=True), typed.columns

    given = {c for table in (user_features, item_features) if table is not None for c in table.columns}
    unknown = sorted((typing.drop | typing.categorical) - given)
    if unknown:
        raise ValueError(
            f"no feature table has the column(s) {', '.join(unknown)} named to drop or to treat as categorical"
        )
    users, user_cols = with_features("customer_key", user_features, "users", sources[0])
    items, item_cols = with_features("product_id", item_features, "items", sources[1])
    return build_data(users, items, inter, user_cols, item_cols), choices


def evaluation_as_of(
    interactions: pd.DataFrame, holdout_days: int | None = None, test: pd.DataFrame | None = None
) -> pd.Timestamp | None:
    """The time point-in-time features must be taken at for an evaluation: the start of the
    holdout for a time split; for an explicit pair, the first test interaction (or, when the test
    file has no times, the last training interaction). None when there is no time at all."""
    if holdout_days is not None:
        return holdout_start(interactions["occurred_at"], holdout_days)
    for frame, pick in ((test, "min"), (interactions, "max")):
        if frame is not None and "occurred_at" in frame and pd.to_datetime(frame["occurred_at"]).notna().any():
            return getattr(pd.to_datetime(frame["occurred_at"]), pick)()
    return None


def flatten_metrics(evaluation: dict, primary: str = "lightfm_hybrid") -> dict[str, float]:
    """MLflow metric names: the `primary` model (the published family) on the primary slice as
    plain names (precision_at_10, ...), each other model on it as <model>_<metric>, every other
    slice as <slice>_<model>_<metric>. A slice no user was evaluated on logs nothing, and no
    undefined value is logged (loggable_metrics)."""
    out = {}
    for model, by_slice in evaluation.items():
        for slice_name, metrics in loggable_metrics(by_slice).items():
            for metric, value in metrics.items():
                prefix = "" if model == primary else f"{model}_"
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
