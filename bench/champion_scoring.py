"""What a scoring-only refresh costs (issue 37): today's lists from a registered champion at scale.

    .venv/bin/python bench/champion_scoring.py                      # 1M customers, 50,000 products, 21M interactions
    .venv/bin/python bench/champion_scoring.py --customers 100000 --items 12500 --interactions 2100000

Between retrains the recommender asset trains nothing: ml.rec_run.lists_from_champion loads the
champion's bundle and ml.rec_lists.champion_lists_for ranks every customer under today's rules.
This times that path alone, part by part, on the synthetic data of bench/recommender_speed.py
(seeded; the shapes of the marts):
- the champion was trained on the first 95 % of customers and 98 % of products; the rest are new
  since (cold customers ranked from features, new products scored from their features);
- its bundle is model_bundle's, with a LightFM model of the published size (64 components) whose
  embeddings are initialised but not trained: scoring costs the same whatever their values, and
  a 1M fit would take longer than everything measured here;
- `load`: unpickling the bundle, as mlflow.pyfunc.load_model does (the MLflow lookup is not
  included); then the phases of champion_lists_for (`champion_user_rows`,
  `champion_interactions`, `champion_rank`).
Interaction keys are Enums, as the asset reads them. Each phase's wall and CPU seconds (CPU: the
process's, both threads of the ranking) and the peak RSS go to
bench/results/champion_scoring_<customers>.json. On a shared machine the wall seconds depend on the
load (recorded before and after); the CPU seconds much less.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import resource
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from lightfm import LightFM  # noqa: E402
from recommender_speed import synthetic  # noqa: E402

from ml.rec_lists import ITEM_FEATURES, USER_FEATURES, ListRules, champion_lists_for, model_bundle  # noqa: E402
from ml.recommender import RecommenderParams, build_data, with_feature_weight  # noqa: E402

RESULTS = ROOT / "bench" / "results"


class Timed:
    """phase(name) records wall and process CPU seconds of a block."""

    def __init__(self):
        self.seconds: dict[str, dict[str, float]] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[name] = {
                "wall_s": round(time.perf_counter() - wall, 2),
                "cpu_s": round(time.process_time() - cpu, 2),
            }
            print(f"  {name}: {self.seconds[name]}", flush=True)


def untrained_model(data, params: RecommenderParams) -> LightFM:
    """A LightFM model of the published size over `data`'s feature spaces, initialised (no epoch)."""
    model = LightFM(
        no_components=params.no_components, loss=params.loss, random_state=np.random.RandomState(params.seed)
    )
    shape = (len(data.users.ids), len(data.items.ids))
    one = sp.coo_matrix((np.ones(1, dtype=np.float32), ([0], [0])), shape=shape)
    model.fit_partial(one, user_features=data.users.matrix, item_features=data.items.matrix, epochs=0)
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--interactions", type=int, default=21_000_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    params = RecommenderParams(seed=args.seed)
    started = time.perf_counter()
    inter, users, products = synthetic(args.customers, args.items, args.interactions, args.seed)
    # the marts' key columns are Enums in text order (tessera/mlio/recommender.py read_interactions)
    interactions = pl.from_pandas(inter).with_columns(
        pl.col("customer_key").cast(pl.Enum(sorted(users["customer_key"]))),
        pl.col("product_id").cast(pl.Enum(sorted(products["product_id"]))),
        pl.col("interaction_type").cast(pl.Enum(["cart", "purchase", "view"])),
    )
    del inter
    customers, items = pl.from_pandas(users), pl.from_pandas(products)
    trained_customers = customers.head(int(len(customers) * 0.95))
    trained_items = items.head(int(len(items) * 0.98))
    print(f"data in {time.perf_counter() - started:.0f} s", flush=True)

    data = build_data(
        trained_customers,
        trained_items,
        interactions.filter(pl.col("customer_key").cast(pl.String).is_in(trained_customers["customer_key"].implode())),
        USER_FEATURES,
        ITEM_FEATURES,
    )
    data = with_feature_weight(data, params.feature_weight)
    blob = pickle.dumps(model_bundle(untrained_model(data, params), data, params.k))
    del data
    print(f"bundle of {len(blob) / 1e9:.2f} GB in {time.perf_counter() - started:.0f} s", flush=True)

    phase = Timed()
    with phase("load"):
        bundle = pickle.loads(blob)
    del blob
    with phase("champion_lists_for"):
        recs = champion_lists_for(bundle, params.feature_weight, customers, items, interactions, ListRules(), phase)
    sources = recs["source"].value_counts().to_dict()
    new_products = set(items["product_id"].tail(len(items) - len(trained_items)).to_list())
    result = {
        "customers": args.customers,
        "items": args.items,
        "interactions": args.interactions,
        "seed": args.seed,
        "command": " ".join(sys.argv),
        "phases": phase.seconds,
        "list_rows": len(recs),
        "rows_by_source": {str(k): int(v) for k, v in sources.items()},
        "rows_with_a_new_product": int(recs["product_id"].astype(str).isin(new_products).sum()),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"champion_scoring_{args.customers}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
