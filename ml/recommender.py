"""LightFM hybrid recommender: matrices, training and scoring (evaluation: ml/rec_evaluation.py).

Everything here is plain numpy/scipy on arrays handed in by the caller, so it can be tested on
tiny fixtures and reused by any orchestration. Matrices are built directly from index arrays (no
Python loop over interactions), and scoring works in user chunks so memory stays bounded.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
import polars as pl
import scipy.sparse as sp
from lightfm import LightFM
from threadpoolctl import threadpool_limits

from ml.rec_metrics import top_candidates


@dataclass(frozen=True)
class RecommenderParams:
    """The recommender's parameters. The defaults are the tuned ones (README, "Recommender
    evaluation": the Online Retail and demo holdouts); the Dagster config and the CLI read them
    from here."""

    # the family whose lists are published (ml/rec_families.PUBLISHABLE), or "auto": the one with
    # the best warm NDCG@k on a validation split carved from the evaluation's training period
    family: str = "auto"
    # the last validation_days of the training period form that validation split (0: test_days)
    validation_days: int = 0
    loss: str = "warp"
    no_components: int = 64
    learning_rate: float = 0.05
    epochs: int = 30
    item_alpha: float = 1e-6
    user_alpha: float = 1e-6
    seed: int = 42
    # implicit-feedback weights per interaction type
    weight_view: float = 1.0
    weight_cart: float = 2.0
    weight_purchase: float = 4.0
    # weight of the metadata features relative to the identity feature (1 = as LightFM's Dataset)
    feature_weight: float = 0.03
    # time decay: an interaction half_life_days older than the newest training one counts half
    # (0 = no decay)
    half_life_days: float = 30.0
    # the last test_days of interactions form the holdout
    test_days: int = 21
    # window of the recently-popular baseline
    recent_days: int = 14
    k: int = 10
    # LightFM threads. 1 is reproducible (same data and seed, same model); more is faster, but
    # LightFM's lock-free parallel updates make every run differ a little.
    num_threads: int = 1
    # compute budget: at most this many (pair, epoch) updates. With more distinct (user, item)
    # pairs than max_updates / epochs, fewer epochs run: each pass already makes more updates.
    # 40M leaves the demo and Online Retail (<300k pairs) at `epochs`; 4.5M pairs get 8 epochs.
    max_updates: int = 40_000_000
    # evaluation fits models and scores every item for each evaluated user: above this many
    # customers it runs on a seeded sample of them (ml/rec_run.py), and above this many users
    # a slice is judged on a seeded sample, so it costs the same at 100k and at 1M customers.
    # Metrics are estimates then; `eval_customers` and each slice's `users` say on how many.
    eval_max_users: int = 20_000
    # EASE (ml/rec_families.py): L2 weight and the most items it inverts (above: the most-used ones)
    ease_lambda: float = 500.0
    ease_max_items: int = 20_000
    # ease_recent (ml/rec_families.RecentEASE): history half-life and the recently-popular share's
    # weight; best on Online Retail's validation split (bench/rec_families.py)
    ease_half_life_days: float = 30.0
    ease_recent_weight: float = 0.01
    # implicit ALS (ml/rec_families.py); the best on Online Retail's validation split of a 2x2x2
    # grid (factors 32/128, regularization 0.05/1, alpha 1/10): bench/rec_families.py
    als_factors: int = 32
    als_regularization: float = 0.05
    als_alpha: float = 1.0
    als_iterations: int = 15

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_logged(cls, logged: dict[str, str]) -> RecommenderParams:
        """Rebuild from MLflow params (strings); names that are not fields are ignored."""
        # a run logged before families existed trained the LightFM hybrid
        values = {"family": "lightfm_hybrid"}
        for f in fields(cls):
            if f.name in logged:
                kind = type(getattr(cls(), f.name))
                values[f.name] = kind(float(logged[f.name])) if kind in (int, float) else kind(logged[f.name])
        return cls(**values)

    def epochs_for(self, n_pairs: int) -> int:
        """Epochs a fit on `n_pairs` distinct pairs runs: `epochs`, cut to the update budget."""
        return max(1, min(self.epochs, self.max_updates // max(n_pairs, 1)))

    def budget_note(self, published_pairs: int, evaluated_pairs: int) -> str | None:
        """Why the logged metrics may flatter the published model: the update budget gave its fit
        fewer epochs than the evaluation's fit on the sample. None when it did not.

        At 1M customers the published fit has 21.1M pairs, so 40M updates allow 1 epoch, while the
        sample's fit runs all 30. On the 1m holdout, 1 epoch scored NDCG@10 0.0119 against 0.0172
        for 2 (docs/scaling.md, thirteenth session)."""
        published, evaluated = self.epochs_for(published_pairs), self.epochs_for(evaluated_pairs)
        if published >= evaluated:
            return None
        return (
            f"update budget: the published fit ran {published} epoch(s) over {published_pairs:,} pairs "
            f"(max_updates {self.max_updates:,}), the evaluation's fit {evaluated} over {evaluated_pairs:,}: "
            "the logged metrics describe a model trained for more epochs than the published one. "
            f"max_updates >= {(published + 1) * published_pairs:,} gives the published fit {published + 1}."
        )

    def weight_of(self) -> dict[str, float]:
        return {"view": self.weight_view, "cart": self.weight_cart, "purchase": self.weight_purchase}


@dataclass
class FeatureSpace:
    """Id maps and a row-normalised [identity | features] matrix, as LightFM's Dataset builds."""

    ids: list[str]
    id_map: dict[str, int]
    feature_names: list[str]
    matrix: sp.csr_matrix


@dataclass
class RecData:
    users: FeatureSpace
    items: FeatureSpace
    interactions: pd.DataFrame  # customer_key, product_id, interaction_type, occurred_at, u, i


@dataclass
class TrainingFrames:
    """What the recommender reads, customers known by their pseudonymous key."""

    customers: pl.DataFrame  # customer_key, personalization_consent
    items: pl.DataFrame  # product_id, category, brand, price_band, is_active
    interactions: pl.DataFrame  # customer_key, product_id, interaction_type (Enums), occurred_at
    features_now: pl.DataFrame  # customer_key and ml.rec_lists.USER_FEATURES, the latest snapshot
    # why no model can be evaluated on this data (holdout_shortfall); None: features_then is read
    skip_reason: str | None = None
    split_at: pd.Timestamp | None = None  # the holdout start
    features_then: pl.DataFrame | None = None  # as of split_at, so the holdout cannot leak in
    features_at: object = None  # the date of the snapshot features_then come from

    def users_now(self) -> pl.DataFrame:
        """Every customer with today's features."""
        return with_features(self.customers, self.features_now)


def with_features(customers: pl.DataFrame, features: pl.DataFrame) -> pl.DataFrame:
    """`customers` in their order, each with its row of `features` (nulls without one)."""
    return customers.join(features, on="customer_key", how="left", maintain_order="left")


def as_polars(frame: pl.DataFrame | pd.DataFrame) -> pl.DataFrame:
    """A frame from code not yet on polars (evaluation tables, tests), converted at this edge."""
    return pl.from_pandas(frame) if isinstance(frame, pd.DataFrame) else frame


def as_pandas(frame: pl.DataFrame) -> pd.DataFrame:
    """The frame the evaluation and baselines (still pandas) read: an Enum column becomes a
    pandas categorical on the same codes and categories, the rest as polars converts it."""

    def column(name: str, dtype: pl.DataType) -> pd.Series:
        if not isinstance(dtype, pl.Enum):
            return frame[name].to_pandas()  # a column at a time: no copy of a datetime column
        categories = pd.Index(dtype.categories.to_list(), dtype=object)
        return pd.Series(pd.Categorical.from_codes(enum_codes(frame[name]), categories=categories), name=name)

    return pd.DataFrame({name: column(name, dtype) for name, dtype in frame.schema.items()}, copy=False)


def enum_codes(column: pl.Series) -> np.ndarray:
    """The codes of an Enum column as numpy integers, -1 for a missing value (as pandas codes)."""
    codes = column.to_physical()
    return codes.to_numpy() if codes.null_count() == 0 else codes.cast(pl.Int64).fill_null(-1).to_numpy()


def text_codes(values: pl.Series) -> tuple[np.ndarray, list[str]]:
    """Each value's position among the distinct values in text order, and those values; a
    missing value is "unknown" (pandas.factorize(sort=True) of the values as text)."""
    values = values.cast(pl.String).fill_null("unknown")
    uniques = values.unique().sort().to_list()
    return values.cast(pl.Enum(uniques)).to_physical().cast(pl.Int64).to_numpy(), uniques


def list_codes(values: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """A list column as (row, code, weight) triples: each distinct value of a row once, weighing
    1 / (the row's distinct values), so the column adds 1 to every row as a one-hot column does;
    a missing or empty list is the one value "unknown". Codes index the distinct values in text
    order, returned as the last item."""
    n = len(values)
    pairs = (
        pl.DataFrame({"row": np.arange(n, dtype=np.int64), "value": values.cast(pl.List(pl.String))})
        .explode("value")
        .drop_nulls("value")
        .unique(maintain_order=True)
    )
    empty = np.ones(n, dtype=bool)
    empty[pairs["row"].to_numpy()] = False
    pairs = pl.concat([pairs, pl.DataFrame({"row": np.flatnonzero(empty), "value": "unknown"})]).sort("row")
    uniques = pairs["value"].unique().sort().to_list()
    rows = pairs["row"].to_numpy()
    codes = pairs["value"].cast(pl.Enum(uniques)).to_physical().cast(pl.Int64).to_numpy()
    weights = (1.0 / np.bincount(rows, minlength=n)[rows]).astype(np.float32)
    return rows, codes, weights, uniques


def feature_space(frame: pl.DataFrame, id_column: str, feature_columns: list[str]) -> FeatureSpace:
    """One-hot "column:value" features plus an identity feature per row, rows summing to 1. A
    List column is multi-hot: a row's values share the weight one value of a plain column has
    (list_codes), so every column weighs the same in a row whatever its number of values."""
    frame = frame.sort(id_column)
    ids = frame[id_column].cast(pl.String).to_list()
    n = len(ids)
    names: list[str] = [f"id:{i}" for i in ids]
    rows = [np.arange(n)]
    cols = [np.arange(n)]
    weights = [np.ones(n, dtype=np.float32)]
    for column in feature_columns:
        if isinstance(frame[column].dtype, pl.List):
            row, codes, weight, uniques = list_codes(frame[column])
        else:
            codes, uniques = text_codes(frame[column])
            row, weight = np.arange(n), np.ones(n, dtype=np.float32)
        rows.append(row)
        cols.append(len(names) + codes)
        weights.append(weight)
        names.extend(f"{column}:{u}" for u in uniques)
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    m = sp.csr_matrix((np.concatenate(weights), (r, c)), shape=(n, len(names)))
    row_sums = np.asarray(m.sum(axis=1)).ravel()
    m = sp.diags(1.0 / row_sums).dot(m).tocsr().astype(np.float32)
    return FeatureSpace(ids=ids, id_map={k: i for i, k in enumerate(ids)}, feature_names=names, matrix=m)


def index_of(keys: pl.Series, id_map: dict[str, int]) -> np.ndarray:
    """id_map[key] for every key, -1 for a key not in id_map (or missing). An Enum column (as
    the recommender asset reads its 26M interactions) is looked up once per category, not once
    per row."""
    if isinstance(keys.dtype, pl.Enum):
        categories = keys.dtype.categories.to_list()
        by_category = np.fromiter((id_map.get(c, -1) for c in categories), dtype=np.int64, count=len(categories))
        if keys.null_count() == 0:
            return by_category[keys.to_physical().to_numpy()]
        codes = enum_codes(keys)
        return np.where(codes >= 0, by_category[codes], -1)  # code -1 is a missing key
    found = keys.cast(pl.String).replace_strict(id_map, default=-1, return_dtype=pl.Int64)
    return found.fill_null(-1).to_numpy()


def type_weights(types: pd.Series, weights: dict[str, float]) -> np.ndarray:
    """weights[type] per row as float64, 0 for a type without a weight (or missing); a categorical
    column is looked up once per category."""
    if isinstance(types.dtype, pd.CategoricalDtype):
        by_category = np.array([float(weights.get(c, 0.0)) for c in types.cat.categories] + [0.0])
        return by_category[types.cat.codes.to_numpy()]  # code -1 (missing) takes the trailing 0
    return types.map(weights).fillna(0.0).to_numpy(dtype=np.float64)


def build_data(
    users: pl.DataFrame | pd.DataFrame,
    items: pl.DataFrame | pd.DataFrame,
    interactions: pl.DataFrame | pd.DataFrame,
    user_feature_columns: list[str],
    item_feature_columns: list[str],
) -> RecData:
    """Feature spaces of `users` and `items`, and the interactions of those users with those items
    (others dropped) with their indices u and i, in their order. The key columns may be Enums.
    The interactions come out as pandas for the evaluation and baselines (as_pandas)."""
    users, items, interactions = as_polars(users), as_polars(items), as_polars(interactions)
    u = feature_space(users, "customer_key", user_feature_columns)
    i = feature_space(items, "product_id", item_feature_columns)
    user_idx = index_of(interactions["customer_key"], u.id_map)
    item_idx = index_of(interactions["product_id"], i.id_map)
    known = (user_idx >= 0) & (item_idx >= 0)
    # only the known rows are copied: an evaluation sample keeps a few percent of them
    everything = known.all()
    inter = as_pandas(interactions if everything else interactions.filter(pl.Series(known)))
    inter["occurred_at"] = pd.to_datetime(inter["occurred_at"])
    inter["u"] = user_idx if everything else user_idx[known]
    inter["i"] = item_idx if everything else item_idx[known]
    return RecData(users=u, items=i, interactions=inter)


def with_feature_weight(data: RecData, weight: float) -> RecData:
    """Metadata features scaled by `weight` against the identity feature, rows renormalised to 1:
    below 1 the model leans on each id's own history, above 1 on what similar ids share."""
    if weight == 1.0:
        return data

    def scaled(space: FeatureSpace) -> FeatureSpace:
        n = len(space.ids)
        if len(space.feature_names) == n:
            return space
        scale = np.ones(len(space.feature_names), dtype=np.float32)
        scale[n:] = weight
        m = space.matrix.multiply(scale[None, :]).tocsr()
        sums = np.asarray(m.sum(axis=1)).ravel()
        m = sp.diags(1.0 / sums).dot(m).tocsr().astype(np.float32)
        return FeatureSpace(space.ids, space.id_map, space.feature_names, m)

    return RecData(users=scaled(data.users), items=scaled(data.items), interactions=data.interactions)


def ids_only(data: RecData) -> RecData:
    """The same users, items and interactions with identity features only (pure collaborative
    LightFM), to show what the metadata features add."""

    def plain(space: FeatureSpace) -> FeatureSpace:
        n = len(space.ids)
        return FeatureSpace(
            space.ids, space.id_map, space.feature_names[:n], sp.identity(n, dtype=np.float32, format="csr")
        )

    return RecData(users=plain(data.users), items=plain(data.items), interactions=data.interactions)


def weighted_matrix(
    inter: pd.DataFrame, shape: tuple[int, int], params: RecommenderParams, reference: pd.Timestamp | None = None
) -> sp.coo_matrix:
    """Sum of interaction weights per (user, item); duplicates are summed by the COO->CSR step.
    With params.half_life_days > 0 each weight decays by half per half-life of age before
    `reference` (default: the newest interaction)."""
    w = type_weights(inter["interaction_type"], params.weight_of()).astype(np.float32)
    if params.half_life_days > 0 and len(inter):
        reference = inter["occurred_at"].max() if reference is None else reference
        age_days = (reference - inter["occurred_at"]).dt.total_seconds().to_numpy() / 86400.0
        w = w * np.power(0.5, np.clip(age_days, 0, None) / params.half_life_days).astype(np.float32)
    m = sp.csr_matrix((w, (inter["u"].to_numpy(), inter["i"].to_numpy())), shape=shape)
    m.sum_duplicates()
    m.eliminate_zeros()
    return m.tocoo()


def fit(
    data: RecData, inter: pd.DataFrame, params: RecommenderParams, reference: pd.Timestamp | None = None
) -> LightFM:
    shape = (len(data.users.ids), len(data.items.ids))
    weights = weighted_matrix(inter, shape, params, reference)
    binary = sp.coo_matrix((np.ones_like(weights.data), (weights.row, weights.col)), shape=shape)
    model = LightFM(
        no_components=params.no_components,
        loss=params.loss,
        learning_rate=params.learning_rate,
        item_alpha=params.item_alpha,
        user_alpha=params.user_alpha,
        random_state=np.random.RandomState(params.seed),
    )
    model.fit(
        binary,
        user_features=data.users.matrix,
        item_features=data.items.matrix,
        sample_weight=weights,
        epochs=params.epochs_for(weights.nnz),
        num_threads=params.num_threads,
    )
    return model


def without_identity(space: FeatureSpace, cold: np.ndarray | None) -> sp.csr_matrix:
    """The feature matrix with the identity feature of `cold` rows zeroed: an id never seen in
    training has an untrained embedding, so a cold user or item is represented by what its
    metadata features contributed in training, at the same weights. Rows with no other feature
    keep the identity (there is nothing else)."""
    if cold is None or not cold.any():
        return space.matrix
    n = len(space.ids)
    has_features = np.diff(space.matrix[:, n:].tocsr().indptr) > 0
    rows = np.flatnonzero(cold & has_features)
    keep = np.ones(n, dtype=np.float32)
    keep[rows] = 0.0
    m = space.matrix.tocsc()
    # the identity block is diagonal: scaling column j by keep[j] zeroes exactly row j's identity
    m = sp.hstack([m[:, :n].multiply(keep[None, :]), m[:, n:]], format="csr")
    m.eliminate_zeros()
    return m.astype(np.float32)


class LightFMScorer:
    """Dense user/item representations, so scoring is a matrix product per user chunk. Users and
    items flagged cold (no training interaction) are represented by their features only.
    Scores are float64 for evaluation (exact ties); `recommend` asks for float32 (half the memory
    traffic when ranking a whole customer base) and multiplies by `item_emb_t` itself."""

    def __init__(
        self,
        model: LightFM,
        data: RecData,
        cold_users: np.ndarray | None = None,
        cold_items: np.ndarray | None = None,
        dtype=np.float64,
    ):
        self.user_bias, self.user_emb = model.get_user_representations(without_identity(data.users, cold_users))
        self.item_bias, self.item_emb = model.get_item_representations(without_identity(data.items, cold_items))
        self.dtype = dtype
        if dtype == np.float32:  # one product, item side transposed once
            self.item_emb_t = np.ascontiguousarray(self.item_emb.T, dtype=np.float32)
            self.user_emb = self.user_emb.astype(np.float32)

    def __call__(self, user_idx: np.ndarray) -> np.ndarray:
        return (
            self.user_emb[user_idx] @ self.item_emb.T + self.user_bias[user_idx, None] + self.item_bias[None, :]
        ).astype(self.dtype)


def cap_per_group(
    top: np.ndarray, valid: np.ndarray, group: np.ndarray | None, top_n: int, max_per_group: int | None
) -> np.ndarray:
    """The published-list rules on ranked candidates, vectorised over a chunk of users.

    `top` holds item indices (users x candidates, best first), `valid` marks real candidates
    (invalid ones sort last), `group` maps an item index to its group code (its category).
    Returns a mask over `top`: per row, a candidate is kept when fewer than `max_per_group`
    better ones of its group were kept before it (None: no cap), and only the first `top_n`
    kept candidates remain."""
    if top_n < 1 or (max_per_group is not None and max_per_group < 1):
        raise ValueError(f"top_n and max_per_group must be >= 1, got {top_n} and {max_per_group}")
    keep = valid.copy()
    if max_per_group is not None and top.size:
        rows, width = top.shape
        codes = group[top].astype(np.int64)
        key = (np.arange(rows, dtype=np.int64)[:, None] * (int(group.max()) + 1) + codes).ravel()
        position = np.arange(key.size)
        # an invalid candidate gets a key of its own, so it never uses up its group's cap
        key = np.where(valid.ravel(), key, -1 - position)
        # occurrence number of each (row, group) in rank order: position within its run after a
        # stable sort by key
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        run_start = np.maximum.accumulate(np.where(np.r_[True, sorted_key[1:] != sorted_key[:-1]], position, 0))
        occurrence = np.empty(key.size, dtype=np.int64)
        occurrence[order] = position - run_start
        keep &= (occurrence < max_per_group).reshape(rows, width)
    keep &= np.cumsum(keep, axis=1) <= top_n
    return keep


def list_owners(
    user_emb: np.ndarray, user_bias: np.ndarray, cold: np.ndarray, popular: np.ndarray, exclude: sp.csr_matrix
) -> np.ndarray:
    """Per user index, the user whose ranked list it gets (recommend): its own, unless its list
    equals an earlier user's by construction. Among users without excluded items, every `popular`
    user gets the same list (the popularity scores), and `cold` users (ranked by their features)
    with byte-identical representations (embedding row and bias) get the same list; each such
    group is owned by its first user."""
    n = len(user_bias)
    owner = np.arange(n)
    nothing_excluded = np.diff(exclude.indptr) == 0
    same_popular = np.flatnonzero(popular & nothing_excluded)
    if len(same_popular):
        owner[same_popular] = same_popular[0]
    same_cold = np.flatnonzero(cold & ~popular & nothing_excluded)
    if len(same_cold):
        rows = np.hstack([user_emb[same_cold], user_bias[same_cold, None]])
        rows = np.ascontiguousarray(rows).view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
        _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
        owner[same_cold] = same_cold[first[inverse.ravel()]]
    return owner


def shared_rows(users: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`users` holds the ranked users' indices of some rows, grouped by user in ascending order.
    Returns, for every user index in order, the user index repeated per row of its owner's list,
    and the positions of those rows in `users`."""
    n = len(owner)
    counts = np.bincount(users, minlength=n)
    first = np.cumsum(counts) - counts  # position of each ranked user's first row
    taken = counts[owner]
    out_start = np.cumsum(taken) - taken
    rows = np.repeat(first[owner] - out_start, taken) + np.arange(int(taken.sum()))
    return np.repeat(np.arange(n), taken), rows


def recommend(
    model: LightFM,
    data: RecData,
    exclude: sp.csr_matrix,
    eligible_items: np.ndarray,
    k: int,
    chunk: int | None = None,
    cold_users: np.ndarray | None = None,
    popular_users: np.ndarray | None = None,
    popularity: np.ndarray | None = None,
    item_group: np.ndarray | None = None,
    max_per_group: int | None = None,
    zero_identity: bool = True,
    threads: int | None = None,
    scorer=None,
) -> pd.DataFrame:
    """Top-k eligible items per user, `exclude` pairs left out, at most `max_per_group` items of
    one `item_group` (category codes per item index) per user; one row per recommendation with
    rank 1..n and its source (customer_key, product_id and source are categorical; the codes of
    the first two are the user and item indices): 'personalised' (history), 'cold_start_features' (no history: ranked
    by the user's features alone, see without_identity) or 'popularity' (rows of `popular_users`
    get the `popularity` scores: no usable features, or no consent to personalise).

    zero_identity=False: the user rows carry no identity feature (unseen_user_rows), so cold
    users are scored from the rows as they are.

    Everything runs per chunk of users in numpy (float32 scores, top_candidates for a candidate
    pool, the cap by cap_per_group); ids are attached once at the end. Only eligible items are
    scored, and a user's own bias, which cannot change the order of their list, is added to
    their chosen scores only. A chunk's scores (`chunk` users; by default about 16 MB of them)
    stay in the CPU cache while they are ranked; `threads` chunks are ranked at once (default: one
    per CPU), with the same result as one at a time. Users whose lists are equal by construction
    (list_owners) are ranked once and share the rows.

    `scorer`: another family's scores in the same linear shape (ml.rec_families.LinearScores:
    user_emb, item_emb_t, item_bias, user_bias; `model` is then unused); it has no feature-based
    rows, so every customer without history must be among `popular_users`."""
    n_users = len(data.users.ids)
    if n_users == 0:
        raise ValueError("no user to recommend for")
    cold = np.zeros(n_users, dtype=bool) if cold_users is None else cold_users
    popular = np.zeros(n_users, dtype=bool) if popular_users is None else popular_users
    if popular.any() and popularity is None:
        raise ValueError("popular_users given without popularity scores")
    if max_per_group is not None and item_group is None:
        raise ValueError("max_per_group given without item_group")
    columns = np.flatnonzero(eligible_items)  # eligible item indices
    if len(columns) == 0:
        raise ValueError("no eligible (active) item to recommend")
    # scored in a fixed shuffled order, so that top_candidates' blocks are fair samples of the
    # catalogue; ties still go to the lower item index (tie_key)
    columns = columns[np.random.default_rng(0).permutation(len(columns))]
    if scorer is None:
        scorer = LightFMScorer(model, data, cold_users=(cold & ~popular) if zero_identity else None, dtype=np.float32)
    elif (cold & ~popular).any():
        raise ValueError("a family scorer ranks customers by their history: customers without one get popular_users")
    item_emb_t = np.ascontiguousarray(scorer.item_emb_t[:, columns])
    item_bias = scorer.item_bias[columns].astype(np.float32)
    user_bias = scorer.user_bias.astype(np.float32)
    position = np.full(len(data.items.ids), -1, dtype=np.int64)  # item index -> scored column
    position[columns] = np.arange(len(columns))
    source_names = np.array(["personalised", "cold_start_features", "popularity"])
    source = np.where(popular, 2, np.where(cold, 1, 0)).astype(np.int8)
    # the candidate pool: wide enough that the category cap still leaves k (unless the eligible
    # catalogue is mostly one category)
    pool = min(len(columns), k if max_per_group is None else k * max(max_per_group, 5))
    chunk = chunk or max(16, min(2048, 4_000_000 // len(columns)))
    popular_scores = None if popularity is None else popularity[columns].astype(np.float32)
    group = None if item_group is None else item_group[columns]

    # Users whose lists cannot differ are ranked once (list_owners): cold customers share a few
    # feature combinations, and everyone shown the popular list gets the same one (docs/scaling.md).
    owner = list_owners(scorer.user_emb, user_bias, cold & ~popular, popular, exclude)
    ranked_users = np.flatnonzero(owner == np.arange(n_users))

    def rank_chunk(start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        idx = ranked_users[start : start + chunk]
        scores = scorer.user_emb[idx] @ item_emb_t
        scores += item_bias[None, :]
        rows = popular[idx]
        if rows.any():
            scores[rows] = popular_scores[None, :]
        ex_r, ex_c = exclude[idx].nonzero()
        ex_c = position[ex_c]
        scores[ex_r[ex_c >= 0], ex_c[ex_c >= 0]] = -np.inf
        top, top_scores, valid = top_candidates(scores, pool, tie_key=columns)
        # the user bias: the same float32 addition as scoring with it, on the chosen scores only
        top_scores[~rows] += user_bias[idx[~rows], None]
        keep = cap_per_group(top, valid, group, k, max_per_group)
        r, c = np.nonzero(keep)
        return idx[r], columns[top[r, c]], np.cumsum(keep, axis=1)[r, c], top_scores[r, c]

    # Chunks are independent, so `threads` of them are ranked at once (numpy releases the GIL in
    # its array operations) and collected in order: the same rows as one at a time. Each product
    # then runs on one BLAS thread; two BLAS threads per product left the ranking on one core
    # (synthetic 1M x 50,000 items: 156 s one chunk at a time).
    starts = range(0, len(ranked_users), chunk)
    threads = max(1, threads if threads is not None else (os.cpu_count() or 1))
    if threads == 1:
        parts = [rank_chunk(start) for start in starts]
    else:
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as workers:
            parts = list(workers.map(rank_chunk, starts))
    users, items, ranks, scores = (np.concatenate(column) for column in zip(*parts, strict=True))
    if len(ranked_users) < n_users:  # every user gets its owner's rows, in user order
        users, rows = shared_rows(users, owner)
        items, ranks, scores = items[rows], ranks[rows], scores[rows]
    # the key columns are categorical (codes: the user and item indices): 10M rows of strings at
    # 1M customers took GBs to build, where codes take 4 bytes a row
    return pd.DataFrame(
        {
            "customer_key": pd.Categorical.from_codes(users, categories=pd.Index(data.users.ids)),
            "rank": ranks.astype(np.int64),
            "product_id": pd.Categorical.from_codes(items, categories=pd.Index(data.items.ids)),
            "score": scores.astype(np.float64),
            "source": pd.Categorical.from_codes(source[users], categories=pd.Index(source_names)),
        }
    )


def unseen_user_rows(feature_names: list[str], users: pl.DataFrame, feature_weight: float) -> sp.csr_matrix:
    """Rows, in a trained model's user feature space (`feature_names`: 'id:<key>' then
    'column:value'), for users the model never saw: each of their 'column:value' features the
    vocabulary knows, at the weight it had in training once the identity is dropped
    (feature_space + with_feature_weight + without_identity: w / (1 + w * columns)). Values the
    vocabulary does not know add nothing. `users` is one row per user, in output order; a List
    column is multi-hot as in feature_space (its values share the column's weight). A column
    whose values are still delimited text ("a|b") is not split here: type it as training did
    (ml.rec_features) first, or its values are unknown and add nothing."""
    index = {name: j for j, name in enumerate(feature_names)}
    columns = sorted({n.split(":", 1)[0] for n in feature_names if not n.startswith("id:")})
    value = feature_weight / (1.0 + feature_weight * len(columns))
    rows, cols, weights = [], [], []
    for column in columns:
        if column not in users.columns:
            continue
        if isinstance(users[column].dtype, pl.List):
            row, codes, weight, uniques = list_codes(users[column])
            names = pl.Series([f"{column}:{u}" for u in uniques])[codes]
        else:
            row = np.arange(len(users))
            weight = np.ones(len(users), dtype=np.float32)
            names = users.select(
                pl.format("{}:{}", pl.lit(column), pl.col(column).cast(pl.String).fill_null("unknown"))
            ).to_series()
        j = names.replace_strict(index, default=None, return_dtype=pl.Int64)
        known = j.is_not_null().to_numpy()
        rows.append(row[known])
        cols.append(j.drop_nulls().to_numpy())
        weights.append(weight[known])
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    data = (value * np.concatenate(weights)).astype(np.float32) if weights else np.zeros(0, dtype=np.float32)
    return sp.csr_matrix((data, (r, c)), shape=(len(users), len(feature_names)))


def pairs_matrix(inter: pd.DataFrame, shape: tuple[int, int]) -> sp.csr_matrix:
    """1 for every distinct (u, i) pair in `inter`."""
    pairs = inter[["u", "i"]].drop_duplicates()
    return sp.csr_matrix((np.ones(len(pairs), dtype=np.float32), (pairs["u"], pairs["i"])), shape=shape)


def purchased_matrix(data: RecData) -> sp.csr_matrix:
    inter = data.interactions
    return pairs_matrix(inter[inter["interaction_type"] == "purchase"], (len(data.users.ids), len(data.items.ids)))
