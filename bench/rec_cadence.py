"""What a weekly retrain costs in recommendation quality (issue 37): lists from a model up to six
days stale against lists from a model retrained every night, on real purchases.

    .venv/bin/python bench/rec_cadence.py --db data/online_retail/tessera.duckdb
    .venv/bin/python bench/rec_cadence.py --db <run>/tessera.duckdb --origins 3 --cadence 7

The warehouse is a finished tessera run (`make online-retail`); its recommender tables are read
as the asset reads them (marts.fct_customer_product_interactions, point-in-time
marts.customer_rec_user_features, marts.dim_products' category, brand and price band).

For each origin day D (the last `--origins` weeks before the data ends, one week apart):
- the weekly model: the published configuration (RecommenderParams' defaults) fitted on every
  interaction up to the end of D, as the run on night D trains it;
- the nightly models: the same configuration fitted on every interaction up to the end of each
  day D+1 .. D+cadence-2 (those `--ages` asks for).
Each day t = D+1 .. D+cadence (or those of `--ages`) is judged as the shop would see it: the lists shown on day t come
from the run of night t-1, so the weekly model (stale by t-1-D days: 0 to cadence-1) and the
nightly model of t-1 both rank for every customer with history, everything bought up to t-1
left out, scored on the purchases made on day t of products the customer had not bought
before: the evaluation's primary slice (warm, ml/rec_evaluation.py) with the day as holdout.
Customers and products new since a model's training are ranked from their features alone, as
champion_lists_for and the evaluation's cold slices do. User features are those of the snapshot
before D, for both models (a scoring-only run uses today's; the difference is left out here).

Reported: warm NDCG@10 and precision@10 of both, pooled over every (customer, day), per staleness
(t-1-D days), and the paired difference with a seeded bootstrap interval (ml/promotion.py).
Results: bench/results/rec_cadence_<db folder>.json and .md. Fits are single-threaded and seeded:
a rerun gives the same figures; the seconds depend on what else the machine runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ml.promotion import paired_bootstrap  # noqa: E402
from ml.rec_evaluation import Split, item_popularity, prepare_tables, seen, slices  # noqa: E402
from ml.rec_lists import USER_FEATURES  # noqa: E402
from ml.rec_metrics import MetricAccumulator  # noqa: E402
from ml.recommender import LightFMScorer, RecommenderParams, fit, with_feature_weight  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def read_tables(db: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("set TimeZone = 'UTC'")
        interactions = con.sql(
            "select customer_key, product_id, interaction_type::varchar as interaction_type, occurred_at "
            "from marts.fct_customer_product_interactions"
        ).df()
        users = con.sql(
            f"select {', '.join(['customer_key', 'as_of_date', *USER_FEATURES])} from marts.customer_rec_user_features"
        ).df()
        items = con.sql("select product_id, category, brand, price_band from marts.dim_products").df()
    finally:
        con.close()
    if interactions.empty:
        raise SystemExit(f"{db}: marts.fct_customer_product_interactions has no row")
    return interactions, users, items


def warm_day(data, train: pd.DataFrame, test: pd.DataFrame, day: pd.Timestamp, scorers: dict, k: int) -> dict:
    """Per scorer, (user indices, NDCG@k, precision@k) on the warm slice of one day."""
    split = Split(train=train, test=test, split_at=day)
    spec = slices(data, split)["warm"]
    n_items = len(data.items.ids)
    popularity = item_popularity(train, n_items)
    n_train_users = max(train["u"].nunique(), 1)
    out = {}
    for name, scorer in scorers.items():
        acc = MetricAccumulator(k, n_items, popularity, min_popularity=1.0 / n_train_users)
        for start in range(0, len(spec.users), 1024):
            idx = spec.users[start : start + 1024]
            acc.add(scorer(idx), spec.positives[idx], spec.exclude[idx], users=idx)
        users, ndcg = acc.per_user("ndcg")
        _, precision = acc.per_user("precision")
        out[name] = (users, ndcg, precision)
    return out


def model_through(hybrid, inter: pd.DataFrame, end: pd.Timestamp, params: RecommenderParams):
    """The published configuration fitted on every interaction before `end`; its scorer, with the
    users and items it never saw ranked from their features."""
    train = inter[inter["occurred_at"] < end]
    model = fit(hybrid, train, params, reference=train["occurred_at"].max())
    warm_users, warm_items = seen(train, (len(hybrid.users.ids), len(hybrid.items.ids)))
    return LightFMScorer(model, hybrid, cold_users=~warm_users, cold_items=~warm_items)


def run_origin(interactions, users, items, origin: pd.Timestamp, ages: list[int], params) -> pd.DataFrame:
    """One origin day: for each staleness in `ages`, the day t = origin + age + 1 judged with every
    warm customer's NDCG@10 and precision@10 under the weekly model (trained through the origin)
    and the nightly one (trained through t - 1, the same model at staleness 0)."""
    data = prepare_tables(interactions, users, items, as_of=origin)
    hybrid = with_feature_weight(data, params.feature_weight)
    inter = data.interactions
    day = pd.Timedelta(days=1)
    started = time.perf_counter()
    models = {age: model_through(hybrid, inter, origin + (age + 1) * day, params) for age in {0, *ages}}
    fit_seconds = time.perf_counter() - started
    rows: list[pd.DataFrame] = []
    for age in ages:  # day t = origin + age + 1, lists from night t - 1
        t = origin + (age + 1) * day
        train = inter[inter["occurred_at"] < t]
        bought_on_t = (inter["occurred_at"] >= t) & (inter["occurred_at"] < t + day)
        test = inter[bought_on_t & (inter["interaction_type"] == "purchase")]
        if test.empty:
            print(f"  {t.date()}: no purchase", flush=True)
            continue
        scores = warm_day(data, train, test, t, {"weekly": models[0], "nightly": models[age]}, params.k)
        (users, w_ndcg, w_p), (users_n, n_ndcg, n_p) = scores["weekly"], scores["nightly"]
        if not np.array_equal(users, users_n):
            raise AssertionError("both models must be judged on the same customers")
        rows.append(
            pd.DataFrame(
                {
                    "origin": str(origin.date()),
                    "day": str(t.date()),
                    "staleness_days": age,
                    "u": users,
                    "weekly_ndcg": w_ndcg,
                    "nightly_ndcg": n_ndcg,
                    "weekly_p": w_p,
                    "nightly_p": n_p,
                }
            )
        )
    out = pd.concat(rows, ignore_index=True)
    print(
        f"  origin {origin.date()}: {len(models)} fits in {fit_seconds:.0f} s, {len(out)} (customer, day) pairs",
        flush=True,
    )
    return out


def summarise(rows: pd.DataFrame, seed: int) -> dict:
    def block(frame: pd.DataFrame) -> dict:
        interval = paired_bootstrap(frame["weekly_ndcg"], frame["nightly_ndcg"], 0.95, 2000, seed)
        return {
            "pairs": len(frame),
            "weekly_ndcg_at_10": round(frame["weekly_ndcg"].mean(), 5),
            "nightly_ndcg_at_10": round(frame["nightly_ndcg"].mean(), 5),
            "ndcg_difference": round(interval.mean_difference, 5),
            "ndcg_difference_95": [round(interval.low, 5), round(interval.high, 5)],
            "ndcg_relative": round(frame["weekly_ndcg"].mean() / frame["nightly_ndcg"].mean() - 1, 4)
            if frame["nightly_ndcg"].mean() > 0
            else None,
            "weekly_precision_at_10": round(frame["weekly_p"].mean(), 5),
            "nightly_precision_at_10": round(frame["nightly_p"].mean(), 5),
        }

    return {
        "all": block(rows),
        "by_staleness": {int(a): block(g) for a, g in rows.groupby("staleness_days")},
        "by_origin": {o: block(g) for o, g in rows.groupby("origin")},
    }


def markdown(result: dict) -> str:
    s = result["summary"]
    lines = [
        f"# Weekly vs nightly retraining: {result['dataset']}",
        "",
        f"Origins {', '.join(result['origins'])}; cadence {result['cadence']} days; published configuration.",
        "",
        "| staleness (days) | pairs | weekly NDCG@10 | nightly NDCG@10 | difference [95 %] | weekly P@10 | nightly P@10 |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for label, b in [*((str(a), b) for a, b in s["by_staleness"].items()), ("**all**", s["all"])]:
        lines.append(
            f"| {label} | {b['pairs']} | {b['weekly_ndcg_at_10']:.4f} | {b['nightly_ndcg_at_10']:.4f} | "
            f"{b['ndcg_difference']:+.4f} [{b['ndcg_difference_95'][0]:+.4f}, {b['ndcg_difference_95'][1]:+.4f}] | "
            f"{b['weekly_precision_at_10']:.4f} | {b['nightly_precision_at_10']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def combine(paths: list[Path], seed: int, cadence: int) -> int:
    """One summary of several runs' rows (each origin judged once)."""
    rows = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    if rows.duplicated(["origin", "day", "u"]).any():
        raise SystemExit("the row files overlap: an origin is in more than one of them")
    result = {
        "dataset": "combined",
        "files": [str(p) for p in paths],
        "cadence": cadence,
        "origins": sorted(rows["origin"].unique()),
        "summary": summarise(rows, seed),
        "seconds": 0.0,
    }
    (RESULTS / "rec_cadence_combined.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "rec_cadence_combined.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, help="a finished tessera run's DuckDB file (not with --combine)")
    parser.add_argument("--origins", type=int, default=2)
    parser.add_argument("--cadence", type=int, default=7)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--ages",
        type=int,
        nargs="+",
        help="staleness days to judge (default every one, 0 .. cadence-1: a fit each); "
        "--ages 6 judges only the worst day, the last before the retrain",
    )
    parser.add_argument("--origin", nargs="+", help="origin days YYYY-MM-DD instead of the last --origins weeks")
    parser.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        help="summarise together the per-(customer, day) rows of earlier runs (their _rows.parquet files)",
    )
    args = parser.parse_args()
    if args.combine:
        return combine(args.combine, args.seed, args.cadence)
    if args.db is None:
        raise SystemExit("--db is needed (or --combine)")
    if args.cadence < 2 or args.origins < 1:
        raise SystemExit("--cadence must be at least 2 and --origins at least 1")
    ages = sorted(set(args.ages if args.ages else range(args.cadence)))
    if ages[0] < 0 or ages[-1] >= args.cadence:
        raise SystemExit(f"--ages must lie in 0 .. {args.cadence - 1}, got {ages}")
    started = time.perf_counter()
    interactions, users, items = read_tables(args.db)
    last = pd.Timestamp(interactions["occurred_at"].max()).normalize()
    # the last origin leaves `cadence` whole days after it, the day the data ends included
    origins = [last - pd.Timedelta(days=args.cadence * (n + 1)) for n in reversed(range(args.origins))]
    if args.origin:
        origins = sorted(pd.Timestamp(o) for o in args.origin)
    params = RecommenderParams(seed=args.seed)
    print(
        f"{args.db}: {len(interactions):,} interactions up to {last.date()}; origins {[str(o.date()) for o in origins]}"
    )
    rows = pd.concat([run_origin(interactions, users, items, o, ages, params) for o in origins])
    result = {
        "dataset": args.db.parent.name,
        "db": str(args.db),
        "cadence": args.cadence,
        "staleness_days_judged": ages,
        "origins": [str(o.date()) for o in origins],
        "params": params.as_dict(),
        "summary": summarise(rows, args.seed),
        "seconds": round(time.perf_counter() - started, 1),
        "command": " ".join(sys.argv),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"rec_cadence_{args.db.parent.name}_{'_'.join(result['origins'])}_ages{'-'.join(map(str, ages))}"
    rows.to_parquet(RESULTS / f"{name}_rows.parquet", index=False)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
