"""The blend behind a visitor's recommendations (tessera/realtime/visitor_recs.py): ranked lists
fused, then boosted by the live session, with the reason for every item.

Lists (each ranked, best first):

- `published`: the customer's published list (a known customer only);
- `session_knn`: V-SKNN over the published session index, queried with the visitor's recent
  views and cart (tessera/session_serving.py's model);
- `cart_complement`: the published bought-together lists of the products in the cart, merged by
  summing their scores (a product bought with two cart items ranks above one bought with one);
- `popular`: the published popular products, used only to fill the places left.

Fusion is reciprocal-rank (Cormack, Clarke & Büttcher 2009): an item scores the sum over the
lists holding it of weight / (rrf_k + rank). Ranks, not scores, because the lists' scores are not
on one scale (a V-SKNN sum of similarities, a cosine, a model's score). rrf_k is 10, not the
paper's 60: the lists here are 10 to 50 items long, and 60 would flatten their own order.
With one list and no boost the blend keeps that list's order exactly.

Boosts multiply the fused score:

- recently viewed categories: 1 + category * affinity, the affinity of a category the summed
  weights 1, 1/2, 1/3 ... of its places among the visitor's recent categories (newest first),
  divided by the largest, so in [0, 1];
- time of day: lift ** time_of_day, the product's share of the session index's sessions in the
  current quarter of the day (UTC, 00-06, 06-12, 12-18, 18-24) over its share of all sessions,
  smoothed towards 1 (DAYPART_SMOOTHING sessions) and clipped to [1/2, 2].

Device is not used: the published session index carries no device, and no real clickstream we
hold has enough sessions with one to measure a device prior on (docs/realtime_storefront.md).

Products the visitor has in the cart, just bought (the last order) or viewed recently are never
recommended: the session model never proposes its query's items either.

The weights were chosen on a validation split of Online Retail's training sessions and measured
once on its test sessions (bench/visitor_blend.py; figures in docs/realtime_storefront.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

PUBLISHED = "published"
SESSION_KNN = "session_knn"
CART_COMPLEMENT = "cart_complement"
POPULAR = "popular"
CATEGORY = "category"
TIME_OF_DAY = "time_of_day"

DAYPARTS = 4
DAYPART_SMOOTHING = 20.0
LIFT_RANGE = (0.5, 2.0)


@dataclass(frozen=True)
class BlendWeights:
    """How much each signal counts; the base list (published, else session_knn) weighs 1."""

    # chosen on Online Retail's validation split (bench/visitor_blend.py): the grid's best hit rate
    complement: float = 2.0
    category: float = 0.25
    # measured, not used: no gain on validation, and alone it lost hits on the test
    time_of_day: float = 0.0
    rrf_k: float = 10.0

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"BlendWeights.{name} must be a finite number >= 0, got {value!r}")
        if self.rrf_k <= 0:
            raise ValueError(f"BlendWeights.rrf_k must be above 0, got {self.rrf_k!r}")


DEFAULT_WEIGHTS = BlendWeights()


@dataclass(frozen=True)
class Ranked:
    """One list: its source name, its weight in the fusion, its items best first (dicts with at
    least product_id; product_name and category when known; `via` for complements)."""

    source: str
    weight: float
    items: list[dict]


def category_affinity(categories: Sequence[str]) -> dict[str, float]:
    """Recent categories (newest first, repeats allowed) -> affinity in (0, 1], the newest
    weighing most: the sum of 1 / (1 + place) over a category's places, over the largest sum."""
    sums: dict[str, float] = {}
    for place, category in enumerate(categories):
        if category:
            sums[category] = sums.get(category, 0.0) + 1.0 / (1 + place)
    top = max(sums.values(), default=0.0)
    return {c: s / top for c, s in sums.items()} if top else {}


def complement_list(cart: Iterable[str], bought_together: Callable[[str], list[dict] | None]) -> list[dict]:
    """The bought-together lists of the cart's products merged: score = the sum of the cosines,
    `via` = the cart products that brought the item, best first (ties: product id)."""
    merged: dict[str, dict] = {}
    for seed in sorted(set(cart)):
        for item in bought_together(seed) or ():
            pid = item["product_id"]
            entry = merged.get(pid)
            if entry is None:
                entry = merged[pid] = {
                    "product_id": pid,
                    "product_name": item.get("product_name"),
                    "category": item.get("category"),
                    "score": 0.0,
                    "via": [],
                }
            entry["score"] += float(item.get("score") or 0.0)
            entry["via"].append(seed)
    return sorted(merged.values(), key=lambda e: (-e["score"], e["product_id"]))


def daypart(epoch_seconds: float) -> int:
    """The quarter of the day (UTC) of an epoch second: 0 for 00-06 ... 3 for 18-24."""
    return int((epoch_seconds % 86400) // (86400 / DAYPARTS))


def daypart_lift(sessions_items: sp.csr_matrix, starts_seconds: np.ndarray) -> np.ndarray:
    """Items x DAYPARTS: each item's share of sessions in a daypart over its share overall,
    smoothed towards 1 by DAYPART_SMOOTHING sessions, clipped to LIFT_RANGE. `sessions_items`
    is sessions x items (non-zero: the session touched the item); starts in epoch seconds."""
    n_sessions, n_items = sessions_items.shape
    if n_sessions == 0:
        return np.ones((n_items, DAYPARTS))
    parts = (np.asarray(starts_seconds, dtype=np.float64) % 86400 // (86400 / DAYPARTS)).astype(np.int64)
    onehot = sp.csr_matrix((np.ones(n_sessions), (np.arange(n_sessions), parts)), shape=(n_sessions, DAYPARTS))
    binary = sessions_items.copy().tocsr()
    binary.data = np.ones_like(binary.data, dtype=np.float64)
    counts = np.asarray((binary.T @ onehot).todense())  # items x dayparts
    share = np.bincount(parts, minlength=DAYPARTS) / n_sessions  # of all sessions, per daypart
    totals = counts.sum(axis=1, keepdims=True)
    expected = np.maximum(share[None, :], 1e-12)
    lift = (counts + DAYPART_SMOOTHING * share[None, :]) / ((totals + DAYPART_SMOOTHING) * expected)
    return np.clip(lift, *LIFT_RANGE)


def _fuse(lists: Sequence[Ranked], exclude: set[str], rrf_k: float) -> list[dict]:
    """Reciprocal-rank fusion of the lists, in order of first appearance; each entry with its
    fused score, the list that counted most and a reason per list holding it."""
    pool: dict[str, dict] = {}
    for ranked in lists:
        if ranked.weight <= 0:
            continue
        for rank, item in enumerate(ranked.items, start=1):
            pid = item["product_id"]
            if pid in exclude:
                continue
            share = ranked.weight / (rrf_k + rank)
            entry = pool.setdefault(
                pid,
                {"product_id": pid, "product_name": item.get("product_name"), "category": item.get("category"),
                 "score": 0.0, "best": (-1.0, ""), "reasons": []},
            )  # fmt: skip
            entry["score"] += share
            if share > entry["best"][0]:
                entry["best"] = (share, ranked.source)
            reason = {"kind": ranked.source}
            if item.get("via"):
                reason["product_ids"] = list(item["via"])
            entry["reasons"].append(reason)
            if entry["category"] is None:
                entry["category"] = item.get("category")
    return list(pool.values())


def _boost(entry: dict, affinity: dict[str, float], lift: Callable[[str], float] | None, weights: BlendWeights) -> None:
    category = entry["category"]
    boost = affinity.get(category, 0.0) if category is not None else 0.0
    if weights.category and boost:
        entry["score"] *= 1 + weights.category * boost
        entry["reasons"].append({"kind": CATEGORY, "category": category})
    if weights.time_of_day and lift is not None:
        factor = lift(entry["product_id"])
        entry["score"] *= factor**weights.time_of_day
        if factor > 1.0:
            entry["reasons"].append({"kind": TIME_OF_DAY, "lift": round(factor, 3)})


def blend(
    lists: Sequence[Ranked],
    *,
    exclude: set[str],
    affinity: dict[str, float],
    lift: Callable[[str], float] | None,
    weights: BlendWeights,
    limit: int,
    fill: Sequence[dict] = (),
) -> list[dict]:
    """The first `limit` items of the fused lists (module docstring), then `fill` items (the popular
    products) for the places left, without a score. Each item: rank, product_id, product_name,
    category, score, source (the list that counted most for it) and reasons (every list holding it,
    and the boosts applied)."""
    pool = _fuse(lists, exclude, weights.rrf_k)
    for entry in pool:
        _boost(entry, affinity, lift, weights)
    # ties keep the order of first appearance (the base list's order): sorted() is stable
    best = sorted(pool, key=lambda e: -e["score"])[:limit]
    out = [
        {
            "rank": rank,
            "product_id": e["product_id"],
            "product_name": e["product_name"],
            "category": e["category"],
            "score": round(e["score"], 6),
            "source": e["best"][1],
            "reasons": e["reasons"],
        }
        for rank, e in enumerate(best, start=1)
    ]
    taken = {e["product_id"] for e in out} | exclude
    for item in fill:
        if len(out) >= limit:
            break
        if item["product_id"] in taken:
            continue
        taken.add(item["product_id"])
        out.append(
            {
                "rank": len(out) + 1,
                "product_id": item["product_id"],
                "product_name": item.get("product_name"),
                "category": item.get("category"),
                "score": None,
                "source": POPULAR,
                "reasons": [{"kind": POPULAR}],
            }
        )
    return out
