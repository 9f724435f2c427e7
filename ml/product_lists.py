"""Lists per product: "bought together", "viewed together" and "similar items".

The two behavioural lists are one computation on different baskets (ml/sql/co_occurrence.sql,
portable SQL): "bought together" takes an order as the basket, "viewed together" a browsing
session. Two products score by the cosine (Ochiai) of their baskets,
support / sqrt(n_a * n_b), where support is the number of baskets holding both and n_x the
number holding x. Why cosine: a raw count puts the bestsellers on top of every list (they are in
many baskets with everything), while lift (support * N / (n_a * n_b)) rewards rare products so
much that a pair seen twice among two-basket products outranks everything; the cosine divides by
the geometric mean of the two popularities, between the two. A pair needs MIN_SUPPORT (2)
baskets: one basket in common is chance, and without the floor every product of a large basket
would be "bought together" with every other. Baskets of more than MAX_BASKET_ITEMS products
(wholesale orders, bots' sessions) count for their products' totals but make no pairs: they add
n² pairs of weak signal.

Measured (bench/product_lists.py, Online Retail, the last 30 days held out, one seed item per
basket, hit rate at 10): cosine 0.61, top sellers 0.38, lift 0.40, raw count 0.66 (confidence
ranks as the count for a given product). The count wins the hit rate by recommending bestsellers:
its lists show 1,588 distinct products at a median sales rank of 81, the cosine's 2,476 at 515.
The cosine is kept: a list per product should say something about that product, and the
storefront already has a bestseller list. Minimum support 1, 2 or 3 changes the hit rate by about
one point; 2 keeps the table small.

"similar items" is content: products of the same category (a product without one is compared with
the other products without one) by the cosine of [TF-IDF of the name's tokens, the brand, the
price band], the name's vector of unit length and the brand and price band weighted
BRAND_WEIGHT and PRICE_BAND_WEIGHT. Inverse document frequencies are counted within the
category, where a word every product of the category carries ("mug" among mugs) says nothing.
Candidates are the pairs sharing a name token or the brand; the price band only reorders them (a
shared band alone makes no pair: it would pair a quarter of each category with itself). Its
support is the number of name tokens the two share.

Every list: at most top_n products, never the product itself, only `targets` (active products)
recommended, ranks 1..n, ties broken by support then product id (deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

import duckdb
import numpy as np
import polars as pl
import scipy.sparse as sp

BOUGHT_TOGETHER = "bought_together"
VIEWED_TOGETHER = "viewed_together"
SIMILAR = "similar"
LIST_NAMES = (BOUGHT_TOGETHER, VIEWED_TOGETHER, SIMILAR)

MIN_SUPPORT = 2
MAX_BASKET_ITEMS = 100
TOP_N = 20
BRAND_WEIGHT = 0.5
PRICE_BAND_WEIGHT = 0.25
# similar items are scored this many products at a time (memory: the block's candidate pairs)
SIMILAR_BLOCK_ROWS = 512

COLUMNS = ["product_id", "list_name", "rank", "recommended_product_id", "score", "support"]
SCHEMA = {
    "product_id": pl.String,
    "list_name": pl.String,
    "rank": pl.Int64,
    "recommended_product_id": pl.String,
    "score": pl.Float64,
    "support": pl.Int64,
}
PRODUCT_COLUMNS = ["product_id", "product_name", "category", "brand", "price_band", "is_active"]

# co-occurrence measures (SQL over pairs p.support, product_baskets na / nb, totals n): cosine is
# the published one; the others are there for bench/product_lists.py to compare against
SCORES = {
    "cosine": "cast(p.support as double) / sqrt(cast(na.baskets as double) * cast(nb.baskets as double))",
    "lift": "cast(p.support as double) * n.baskets / (cast(na.baskets as double) * nb.baskets)",
    "count": "cast(p.support as double)",
    # P(b | a): the share of a's baskets holding b
    "confidence": "cast(p.support as double) / na.baskets",
}


@dataclass(frozen=True)
class ListParams:
    """The knobs of the lists; the defaults are the published ones (see the module docstring)."""

    top_n: int = TOP_N
    min_support: int = MIN_SUPPORT
    max_basket_items: int = MAX_BASKET_ITEMS
    brand_weight: float = BRAND_WEIGHT
    price_band_weight: float = PRICE_BAND_WEIGHT

    def __post_init__(self):
        for name in ("top_n", "min_support", "max_basket_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"ListParams.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("brand_weight", "price_band_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"ListParams.{name} must not be negative, got {getattr(self, name)}")


DEFAULT_PARAMS = ListParams()


# co_occurrence() copies the caller's baskets here (a temporary table of its connection)
BASKETS_TABLE = "co_occurrence_baskets"


def co_occurrence_sql(baskets: str, targets: str, score: str = "cosine") -> str:
    """ml/sql/co_occurrence.sql over the relations `baskets` (basket_id, product_id) and `targets`
    (product_id): SQL text of the caller's (a table name or a query), never a value; `score` names
    one of SCORES."""
    if score not in SCORES:
        raise ValueError(f"co-occurrence score must be one of {sorted(SCORES)}, got {score!r}")
    text = files("ml").joinpath("sql", "co_occurrence.sql").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return body.format(baskets=baskets, targets=targets, score=SCORES[score])


def co_occurrence(
    con: duckdb.DuckDBPyConnection,
    baskets: str,
    targets: str,
    list_name: str,
    params: ListParams = DEFAULT_PARAMS,
    score: str = "cosine",
) -> pl.DataFrame:
    """The list `list_name` for every product of `baskets` with a partner seen in min_support
    baskets, computed by DuckDB on `con` (see co_occurrence_sql).

    The baskets are materialised first, in a temporary table: the query reads them five times,
    and DuckDB inlines a subquery at each use, so a windowed basket query (view_sessions.sql)
    would run five times at once. At 1M customers (17M views) that ran out of a 4 GB memory
    limit; from the table it takes 20 s.
    """
    sql = co_occurrence_sql(f"select * from {BASKETS_TABLE}", targets, score)
    bound = {"min_support": params.min_support, "max_basket_items": params.max_basket_items, "top_n": params.top_n}
    con.execute(f"create or replace temporary table {BASKETS_TABLE} as select * from ({baskets}) as b")
    try:
        frame = con.sql(sql, params=bound).pl()
    finally:
        con.execute(f"drop table if exists {BASKETS_TABLE}")
    return (
        frame.sort("product_id", "rank")
        .with_columns(pl.lit(list_name).alias("list_name"))
        .select([pl.col(c).cast(t) for c, t in SCHEMA.items()])
    )


def _codes(values: pl.Series) -> np.ndarray:
    """Dense integer codes of a text column (nulls get their own code)."""
    return values.fill_null("\x00").cast(pl.Categorical).to_physical().cast(pl.Int64).to_numpy()


def name_tokens(products: pl.DataFrame) -> pl.DataFrame:
    """(row, token) for each distinct word (letters and digits, two characters or more) of each
    product's name, lower-cased."""
    return (
        products.select(
            pl.int_range(pl.len(), dtype=pl.Int64).alias("row"),
            pl.col("product_name").fill_null("").str.to_lowercase().str.extract_all(r"[\p{L}\p{N}]{2,}").alias("token"),
        )
        .explode("token")
        .drop_nulls("token")
        .unique(["row", "token"])
    )


def _feature_matrix(group: np.ndarray, rows: np.ndarray, keys: pl.Series, weights: np.ndarray, n: int) -> sp.csr_matrix:
    """A sparse (product x feature) matrix: feature = (category group, key), so two products share
    a feature only within one category."""
    qualified = pl.DataFrame({"g": group[rows], "k": keys}).select(pl.struct("g", "k").rank("dense") - 1)
    cols = qualified.to_series().to_numpy().astype(np.int64)
    return sp.csr_matrix((weights, (rows, cols)), shape=(n, int(cols.max()) + 1 if len(cols) else 0))


def similar_items(products: pl.DataFrame, params: ListParams = DEFAULT_PARAMS) -> pl.DataFrame:
    """The "similar" list of every product of `products` (PRODUCT_COLUMNS, one row per product)
    that has a candidate (see the module docstring), active products only as targets."""
    missing = [c for c in PRODUCT_COLUMNS if c not in products.columns]
    if missing:
        raise ValueError(f"similar_items: the products frame lacks columns {missing}")
    if products["product_id"].is_duplicated().any():
        raise ValueError("similar_items: product_id is not unique in the products frame")
    n = products.height
    empty = pl.DataFrame(schema=SCHEMA)
    if n == 0:
        return empty
    group = _codes(products["category"])
    tokens = name_tokens(products).with_columns(g=pl.col("row").map_batches(lambda r: pl.Series(group[r.to_numpy()])))
    t_rows = tokens["row"].to_numpy()
    # inverse document frequency within the category (smoothed as scikit-learn's: at least 1)
    in_group = np.bincount(group)[group[t_rows]]
    doc_freq = tokens.select(pl.len().over("g", "token")).to_series().to_numpy()
    idf = np.log((1.0 + in_group) / (1.0 + doc_freq)) + 1.0
    names = _feature_matrix(group, t_rows, tokens["token"], idf, n)
    norms = np.sqrt(np.asarray(names.multiply(names).sum(axis=1)).ravel())
    names = (sp.diags(np.divide(1.0, norms, out=np.zeros(n), where=norms > 0)) @ names).tocsr()
    has_brand = products["brand"].is_not_null().to_numpy()
    b_rows = np.flatnonzero(has_brand)
    brands = _feature_matrix(group, b_rows, products["brand"].filter(has_brand), np.ones(len(b_rows)), n)
    # one vector per product whose dot product is name cosine + brand_weight * same brand; a
    # candidate pair shares a name token or the brand, in one category (features are per category)
    features = sp.hstack([names, np.sqrt(params.brand_weight) * brands], format="csr")
    binary = names.copy()
    binary.data[:] = 1.0
    band = products["price_band"].fill_null("unknown")
    has_band = (band != "unknown").to_numpy()
    sq_norm = (norms > 0) + params.brand_weight * has_brand + params.price_band_weight * has_band
    active = np.flatnonzero(products["is_active"].fill_null(False).to_numpy())
    scoring = _Scoring(features[active].T.tocsr(), binary[active].T.tocsr(), active, _codes(band), has_band, sq_norm)
    ids = products["product_id"].cast(pl.String)
    # a block of products at a time: a category where every product shares a word or the brand
    # has n² candidate pairs, and only the top_n of each are kept
    blocks = [
        scoring.top(features, binary, start, min(n, start + SIMILAR_BLOCK_ROWS), ids, params)
        for start in range(0, n, SIMILAR_BLOCK_ROWS)
    ]
    return pl.concat([empty, *blocks])


@dataclass(frozen=True)
class _Scoring:
    """What similar_items scores a block of products against: the active products' features and
    name tokens (transposed), their rows in the catalogue, and every product's price band and
    squared vector norm."""

    features_t: sp.csr_matrix
    tokens_t: sp.csr_matrix
    active: np.ndarray
    band_code: np.ndarray
    has_band: np.ndarray
    sq_norm: np.ndarray

    def top(
        self, features: sp.csr_matrix, binary: sp.csr_matrix, start: int, stop: int, ids: pl.Series, params: ListParams
    ) -> pl.DataFrame:
        block = (features[start:stop] @ self.features_t).tocoo()
        # shared name tokens, on the candidates: their pairs are a subset of the block's
        shared = (binary[start:stop] @ self.tokens_t).tocoo()
        width = self.features_t.shape[1]
        order = np.argsort(block.row.astype(np.int64) * width + block.col, kind="stable")
        keys = (block.row.astype(np.int64) * width + block.col)[order]
        support = np.zeros(len(keys), dtype=np.int64)
        support[np.searchsorted(keys, shared.row.astype(np.int64) * width + shared.col)] = np.rint(shared.data)
        r, c, dot = block.row[order] + start, self.active[block.col[order]], block.data[order]
        keep = r != c
        r, c, dot, support = r[keep], c[keep], dot[keep], support[keep]
        same_band = self.has_band[r] & self.has_band[c] & (self.band_code[r] == self.band_code[c])
        score = (dot + params.price_band_weight * same_band) / np.sqrt(self.sq_norm[r] * self.sq_norm[c])
        pairs = pl.DataFrame(
            {"product_id": ids.gather(r), "recommended_product_id": ids.gather(c), "score": score, "support": support}
        )
        return top_per_product(pairs, SIMILAR, params.top_n)


def top_per_product(pairs: pl.DataFrame, list_name: str, top_n: int) -> pl.DataFrame:
    """The top_n pairs of each product by score, then support, then product id, ranked 1..n."""
    ranked = pairs.sort(
        ["product_id", "score", "support", "recommended_product_id"], descending=[False, True, True, False]
    ).with_columns(
        (pl.int_range(pl.len(), dtype=pl.Int64).over("product_id") + 1).alias("rank"),
        pl.lit(list_name).alias("list_name"),
    )
    return ranked.filter(pl.col("rank") <= top_n).select([pl.col(c).cast(t) for c, t in SCHEMA.items()])
