"""Recommender speed: train a family on N interactions, publish top-10 for every customer.

    .venv/bin/python bench/recommender_speed.py                  # 10M interactions, 1M customers
    .venv/bin/python bench/recommender_speed.py --family ease    # EASE (20,000 items: its limit)
    .venv/bin/python bench/recommender_speed.py --interactions 1000000 --customers 100000

The issue's targets: training on 10,000,000 interactions in <= 10 minutes on 2 cores, top-10 for
1,000,000 customers in <= 5 minutes.

Data: synthetic, seeded, written straight into the shapes the asset builds (the demo generator
cannot write 10M interactions on this machine: it holds everything in memory; issue 9). Each
customer has a favourite category; 60 % of their products are in it, the rest follow a
Zipf-like popularity over the whole catalogue; activity per customer is log-normal; each
(customer, product) pair has 2.2 interactions on average, as on the demo data; types are
75 % views, 17 % cart adds, 8 % purchases over 365 days. User features have the shape of
marts.customer_rec_user_features (gender, country, region, age band, RFM bins, segment, device);
item features category, brand and price band; 5 % of products inactive.

Timed, with the shipped RecommenderParams defaults (WARP, 64 components, 30 epochs, feature
weight 0.03, 30-day half-life, one thread, the 40M-update budget; `--epochs`, `--threads` and
`--max-updates` override):
1. build: id maps and feature matrices (ml.recommender.build_data, with_feature_weight);
2. train: ml.recommender.fit on every interaction;
3. publish: ml.rec_lists.published_candidates for every customer: top 10 with already-bought
   excluded, inactive products left out, at most 3 per category, cold-start and popularity
   fallbacks (the exact code the Dagster asset runs).
The offline evaluation (baselines, slices) is not part of these targets and not timed here.

Results go to bench/results/recommender_speed_<interactions>.json and are printed as Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ml.rec_families import PUBLISHABLE, fit_family  # noqa: E402
from ml.rec_lists import ITEM_FEATURES, USER_FEATURES, ListRules, family_lists  # noqa: E402
from ml.recommender import RecommenderParams, build_data, with_feature_weight  # noqa: E402
from tessera.markdown import table  # noqa: E402

T0 = pd.Timestamp("2025-11-01")
PER_PAIR = 2.2


def synthetic(customers: int, items: int, interactions: int, seed: int):
    rng = np.random.default_rng(seed)
    n_categories = 20
    item_category = rng.integers(0, n_categories, items)
    popularity = 1.0 / np.power(np.arange(1, items + 1) + 10.0, 0.9)
    popularity = rng.permutation(popularity)
    popularity /= popularity.sum()

    # distinct (customer, product) pairs, then repeat visits: on the demo data 120k interactions
    # are 55k pairs (2.2 per pair); training works on the pairs, weights summed
    pairs = int(interactions / PER_PAIR)
    activity = rng.lognormal(0.0, 1.0, customers)
    user = rng.choice(customers, pairs, p=activity / activity.sum())
    favourite = rng.integers(0, n_categories, customers)
    # items of each category, and popularity within it, for the 60 % in the favourite category
    order = np.argsort(item_category, kind="stable")
    starts = np.searchsorted(item_category[order], np.arange(n_categories))
    counts = np.bincount(item_category, minlength=n_categories)
    in_favourite = rng.random(pairs) < 0.6
    item = rng.choice(items, pairs, p=popularity)
    fav = favourite[user[in_favourite]]
    item[in_favourite] = order[starts[fav] + (rng.random(in_favourite.sum()) * counts[fav]).astype(np.int64)]
    repeat = np.concatenate([np.arange(pairs), rng.integers(0, pairs, interactions - pairs)])
    user, item = user[repeat], item[repeat]
    kind = rng.choice(np.array(["view", "cart", "purchase"]), interactions, p=[0.75, 0.17, 0.08])
    seconds = rng.integers(0, 365 * 86400, interactions)

    customer_ids = np.char.add("c", np.char.zfill(np.arange(customers).astype(str), 8))
    product_ids = np.char.add("p", np.char.zfill(np.arange(items).astype(str), 6))
    inter = pd.DataFrame(
        {
            "customer_key": customer_ids[user],
            "product_id": product_ids[item],
            "interaction_type": kind,
            "occurred_at": T0 + pd.to_timedelta(seconds, unit="s"),
        }
    )

    def pick(values, size, p=None):
        return np.asarray(values)[rng.choice(len(values), size, p=p)]

    bins = ["1", "2", "3", "4", "5", "none"]
    users = pd.DataFrame(
        {
            "customer_key": customer_ids,
            "gender": pick(["F", "M", "U"], customers, [0.48, 0.42, 0.10]),
            "country_code": pick([f"C{i:02d}" for i in range(34)], customers),
            "region": pick([f"R{i:02d}" for i in range(11)], customers),
            "age_band": pick(["10s", "20s", "30s", "40s", "50s", "60s", "70s", "unknown"], customers),
            "r_bin": pick(bins, customers),
            "f_bin": pick(bins, customers),
            "m_bin": pick(bins, customers),
            "rfm_segment": pick([f"S{i}" for i in range(12)], customers),
            "last_device": pick(["desktop", "mobile", "tablet", "unknown"], customers),
            "personalization_consent": rng.random(customers) > 0.02,
        }
    )
    products = pd.DataFrame(
        {
            "product_id": product_ids,
            "category": np.char.add("cat", item_category.astype(str)),
            "brand": pick([f"b{i}" for i in range(200)], items),
            "price_band": pick(["budget", "mid", "premium", "luxury", "unknown"], items),
            "is_active": rng.random(items) > 0.05,
        }
    )
    return inter, users, products


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interactions", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, help="default: RecommenderParams'")
    parser.add_argument("--threads", type=int, default=None, help="LightFM threads (default: RecommenderParams')")
    parser.add_argument("--max-updates", type=int, help="default: RecommenderParams'")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--family", choices=PUBLISHABLE, default="lightfm_hybrid", help="the family trained and published"
    )
    parser.add_argument("--out", type=Path, help="default: bench/results/recommender_speed_<interactions>.json")
    args = parser.parse_args()

    overrides = {"epochs": args.epochs, "num_threads": args.threads, "max_updates": args.max_updates}
    params = RecommenderParams(
        seed=args.seed, family=args.family, **{k: v for k, v in overrides.items() if v is not None}
    )
    times: dict[str, float] = {}

    started = time.perf_counter()
    inter, users, items = synthetic(args.customers, args.items, args.interactions, args.seed)
    times["generate_s"] = time.perf_counter() - started

    started = time.perf_counter()
    data = build_data(users, items, inter, USER_FEATURES, ITEM_FEATURES)
    data = with_feature_weight(data, params.feature_weight)
    times["build_s"] = time.perf_counter() - started

    started = time.perf_counter()
    model = fit_family(data, params)
    times["train_s"] = time.perf_counter() - started
    rss_after_train = peak_rss_gb()

    started = time.perf_counter()
    recs = family_lists(model, data, users, items, ListRules(), params)
    times["publish_s"] = time.perf_counter() - started

    pairs = int(data.interactions[["u", "i"]].drop_duplicates().shape[0])
    epochs_used = params.epochs_for(pairs)
    result = {
        "interactions": len(data.interactions),
        "distinct_pairs": pairs,
        "customers": len(data.users.ids),
        "items": len(data.items.ids),
        "user_feature_columns": len(data.users.feature_names) - len(data.users.ids),
        "params": params.as_dict(),
        "epochs_used": epochs_used,
        **{k: round(v, 1) for k, v in times.items()},
        "recommendations": len(recs),
        "customers_with_recommendations": int(recs["customer_key"].nunique()),
        "sources": recs.groupby("source")["customer_key"].nunique().to_dict(),
        "peak_rss_gb": round(peak_rss_gb(), 2),
        "peak_rss_gb_after_train": round(rss_after_train, 2),
        "cpus": os.cpu_count(),
    }
    suffix = "" if args.family == "lightfm_hybrid" else f"_{args.family}"
    out = args.out or ROOT / "bench" / "results" / f"recommender_speed_{args.interactions}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    headers = [
        "interactions",
        "pairs",
        "customers",
        "items",
        "epochs",
        "threads",
        "build s",
        "train s",
        "top-10 for all s",
        "peak RSS GB",
    ]
    row = (
        f"{result['interactions']:,}", f"{pairs:,}", f"{result['customers']:,}", f"{result['items']:,}", epochs_used,
        params.num_threads, f"{times['build_s']:.1f}", f"{times['train_s']:.1f}", f"{times['publish_s']:.1f}", result["peak_rss_gb"],
    )  # fmt: skip
    print(table([row], headers, ("right",) * len(headers)))
    print(f"sources: {result['sources']}; written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
