"""Export a tessera run's recommender tables and sweep the hybrid's settings on one time split.

    .venv/bin/python bench/recommender_grid.py --db data/online_retail/tessera.duckdb --holdout-days 30
    .venv/bin/python bench/recommender_grid.py --db data/tessera.duckdb --holdout-days 21

Writes interactions.parquet, users.parquet and items.parquet (the tables `tessera recommend
evaluate` takes) next to bench/results/, then prints the hybrid's primary-slice and cold-user
precision@10 and NDCG@10 for each setting. Not an MLflow search yet (see the recommender issue).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ml.rec_evaluation import evaluate_split, evaluation_as_of, prepare_tables, read_table, time_split  # noqa: E402
from ml.rec_lists import USER_FEATURES  # noqa: E402
from ml.recommender import RecommenderParams  # noqa: E402

GRID = [  # components, half-life days, feature weight, loss
    (64, 0, 1.0, "warp"),
    (64, 0, 0.3, "warp"),
    (64, 30, 0.3, "warp"),
    (64, 60, 0.3, "warp"),
    (64, 30, 1.0, "warp"),
    (64, 30, 0.1, "warp"),
    (64, 30, 0.3, "bpr"),
]


def export(db: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("set TimeZone = 'UTC'")
        con.execute(
            "copy (select customer_key, product_id, interaction_type, occurred_at "
            f"from marts.fct_customer_product_interactions) to '{out / 'interactions.parquet'}'"
        )
        # point in time (as_of_date): the CLI and prepare_tables pick the rows as of the holdout start
        con.execute(
            f"copy (select {', '.join(['customer_key', 'as_of_date', *USER_FEATURES])} "
            f"from marts.customer_rec_user_features) to '{out / 'users.parquet'}'"
        )
        con.execute(
            f"copy (select product_id, category, brand, price_band from marts.dim_products) to '{out / 'items.parquet'}'"
        )
    finally:
        con.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--holdout-days", type=int, default=30)
    args = parser.parse_args()
    out = ROOT / "bench" / "results" / f"recommender_tables_{args.db.parent.name}"
    export(args.db, out)
    interactions, users, items = (
        read_table(out / f) for f in ("interactions.parquet", "users.parquet", "items.parquet")
    )
    data = prepare_tables(interactions, users, items, as_of=evaluation_as_of(interactions, args.holdout_days))
    split = time_split(data, args.holdout_days)
    print(f"tables in {out}; {split.describe()}")
    print("| components | half-life | feature weight | loss | warm P@10 | warm NDCG@10 | cold-user P@10 | seconds |")
    print("| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    for components, half_life, weight, loss in GRID:
        params = RecommenderParams(
            no_components=components, half_life_days=half_life, feature_weight=weight, loss=loss, epochs=30, k=10
        )
        started = time.perf_counter()
        m = evaluate_split(data, split, params, models=["lightfm_hybrid"])["lightfm_hybrid"]
        print(
            f"| {components} | {half_life} | {weight} | {loss} | {m['warm']['precision_at_10']:.4f} | "
            f"{m['warm']['ndcg_at_10']:.4f} | {m['cold_users']['precision_at_10']:.4f} | {time.perf_counter() - started:.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
