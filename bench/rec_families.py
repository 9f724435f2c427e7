"""Every recommender family on real purchases, the champion chosen on a validation split carved
from the training period, the test reported once (issue 37).

    .venv/bin/python bench/rec_families.py                       # every dataset below
    .venv/bin/python bench/rec_families.py --dataset online_retail_last30
    .venv/bin/python bench/rec_families.py --interactions data/export/interactions.parquet --holdout-days 21

Datasets (../shared/data, or $TESSERA_SHARED_DATA):
- online_retail_last30: UCI Online Retail, goods only (stock codes starting with a digit),
  positive quantities, known customers; test = purchases of the last 30 days.
- online_retail_mid30: the same file cut at 2011-07-01, test = June 2011: a second period with
  another season (the file has one year, so the second period is an earlier cut of it).
- complete_journey: the 75,000-line sample of Complete Journey transactions, test = last 30 days.
- any export (`--interactions`, the table `tessera recommend evaluate` takes).

Protocol per dataset: split = train | test (time). Validation = the last `holdout_days` of
train, carved out: train' | validation. Every family (and its tuning grid) is fitted on train'
and scored on validation; the family with the best warm NDCG@10 there is the champion. Then
every configuration is refitted on the whole of train and scored on test once. "tuned" EASE and
ALS are the grid points best on validation, so their test figures are what a careful user of
EASE/ALS would have had. Writes bench/results/rec_families.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import polars as pl  # noqa: E402

from ml.rec_evaluation import (  # noqa: E402
    PRIMARY_SLICE,
    Split,
    evaluate_split,
    prepare_tables,
    read_table,
    time_split,
)
from ml.recommender import RecData, RecommenderParams  # noqa: E402

SHARED = Path(os.environ.get("TESSERA_SHARED_DATA", ROOT.parent / "shared" / "data"))
K = 10
# (name, model, params overrides): the families, and the grids EASE and ALS are tuned over
CONFIGS: list[tuple[str, str, dict]] = [
    ("lightfm_hybrid", "lightfm_hybrid", {}),
    ("lightfm_ids_only", "lightfm_ids_only", {}),
    ("most_popular", "most_popular", {}),
    ("recently_popular", "recently_popular", {}),
    ("item_item", "item_item", {}),
    *[(f"ease_l{lam:g}", "ease", {"ease_lambda": lam}) for lam in (10.0, 50.0, 200.0, 500.0, 2000.0)],
    *[
        (f"ease_recent_h{h:g}_w{w:g}", "ease_recent", {"ease_half_life_days": h, "ease_recent_weight": w})
        for h in (0.0, 30.0)
        for w in (0.003, 0.01, 0.03)
    ],
    *[
        (f"als_f{f}_r{r:g}_a{a:g}", "als", {"als_factors": f, "als_regularization": r, "als_alpha": a})
        for f in (32, 128)
        for r in (0.05, 1.0)
        for a in (1.0, 10.0)
    ],
]


# with --quick, the grid points that are the families' defaults
QUICK = ("ease_l500", "ease_recent_h30_w0.01", "als_f32_r0.05_a1")


def online_retail(cut: str | None) -> pd.DataFrame:
    frame = pl.read_parquet(SHARED / "online_retail" / "online_retail.parquet")
    frame = frame.filter(
        pl.col("CustomerID").is_not_null()
        & (pl.col("Quantity") > 0)
        & ~pl.col("InvoiceNo").str.starts_with("C")
        & pl.col("StockCode").str.contains(r"^\d")
    )
    if cut is not None:
        frame = frame.filter(pl.col("InvoiceDate") < pl.lit(cut).str.to_datetime())
    return frame.select(
        pl.col("CustomerID").cast(pl.Int64).cast(pl.String).alias("customer_key"),
        pl.col("StockCode").alias("product_id"),
        pl.lit("purchase").alias("interaction_type"),
        pl.col("InvoiceDate").alias("occurred_at"),
    ).to_pandas()


def complete_journey() -> pd.DataFrame:
    frame = pl.read_parquet(SHARED / "complete_journey" / "transactions_sample.parquet")
    return frame.select(
        pl.col("household_id").cast(pl.String).alias("customer_key"),
        pl.col("product_id").cast(pl.String).alias("product_id"),
        pl.lit("purchase").alias("interaction_type"),
        pl.col("transaction_timestamp")
        .str.to_datetime(time_zone="UTC")
        .dt.replace_time_zone(None)
        .alias("occurred_at"),
    ).to_pandas()


DATASETS = {
    "online_retail_last30": (lambda: online_retail(None), 30),
    "online_retail_mid30": (lambda: online_retail("2011-07-01"), 30),
    "complete_journey": (complete_journey, 30),
}


def carve(data: RecData, split: Split, holdout_days: int) -> tuple[RecData, Split]:
    """The validation split inside the training period: train' | last holdout_days of train."""
    inner = RecData(users=data.users, items=data.items, interactions=split.train)
    return inner, time_split(inner, holdout_days)


def score_all(data: RecData, split: Split, base: RecommenderParams, quick: bool = False) -> dict[str, dict]:
    out = {}
    # quick: each family's default only (a 20,000-item EASE fit per grid point is minutes)
    configs = [c for c in CONFIGS if c[2] == {} or c[0] in QUICK] if quick else CONFIGS
    for name, model, overrides in configs:
        params = RecommenderParams(**{**base.as_dict(), **overrides})
        started = time.perf_counter()
        metrics = evaluate_split(data, split, params, models=[model])[model]
        seconds = time.perf_counter() - started
        out[name] = {
            "model": model,
            "params": overrides,
            "seconds": round(seconds, 2),
            **{s: {m: round(float(v), 5) for m, v in by.items()} for s, by in metrics.items()},
        }
        warm = metrics[PRIMARY_SLICE]
        print(
            f"  {name:28s} P@10 {warm[f'precision_at_{K}']:.4f} NDCG@10 {warm[f'ndcg_at_{K}']:.4f} "
            f"cov {warm[f'coverage_at_{K}']:.3f} ({seconds:.1f} s)",
            flush=True,
        )
    return out


def best(results: dict[str, dict], family: str | None = None) -> str:
    """The configuration with the best warm NDCG@10 (ties: the first listed)."""
    names = [n for n, r in results.items() if family is None or r["model"] == family]
    return max(names, key=lambda n: (results[n][PRIMARY_SLICE][f"ndcg_at_{K}"], -names.index(n)))


def run(name: str, interactions: pd.DataFrame, holdout_days: int, quick: bool = False) -> dict:
    base = RecommenderParams(k=K)
    data = prepare_tables(interactions)
    split = time_split(data, holdout_days)
    inner, validation = carve(data, split, holdout_days)
    print(f"\n## {name}: {split.describe()}; validation {validation.describe()}", flush=True)
    print(" validation:", flush=True)
    on_validation = score_all(inner, validation, base, quick)
    print(" test:", flush=True)
    on_test = score_all(data, split, base, quick)
    champion = best(on_validation)
    chosen = {fam: best(on_validation, fam) for fam in ("ease", "ease_recent", "als")}
    summary = {
        "champion_by_validation": champion,
        "champion_test": on_test[champion][PRIMARY_SLICE],
        "tuned_ease": chosen["ease"],
        "tuned_ease_test": on_test[chosen["ease"]][PRIMARY_SLICE],
        "tuned_ease_recent": chosen["ease_recent"],
        "tuned_ease_recent_test": on_test[chosen["ease_recent"]][PRIMARY_SLICE],
        "tuned_als": chosen["als"],
        "tuned_als_test": on_test[chosen["als"]][PRIMARY_SLICE],
        "recently_popular_test": on_test["recently_popular"][PRIMARY_SLICE],
        "lightfm_hybrid_test": on_test["lightfm_hybrid"][PRIMARY_SLICE],
    }
    print(f" champion (validation): {champion}: test {summary['champion_test']}", flush=True)
    return {
        "split": split.describe(),
        "validation": validation.describe(),
        "on_validation": on_validation,
        "on_test": on_test,
        "summary": summary,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(DATASETS), action="append")
    p.add_argument("--interactions", type=Path, help="an export instead of the shared datasets")
    p.add_argument("--holdout-days", type=int, default=21)
    p.add_argument("--quick", action="store_true", help="each family's default configuration only")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "rec_families.json")
    args = p.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(name: str, result: dict) -> None:  # after each dataset: a long run keeps what it measured
        previous = json.loads(args.out.read_text()) if args.out.exists() else {}
        args.out.write_text(json.dumps({**previous, name: result}, indent=2, default=str))
        print(f"{name} written to {args.out}", flush=True)

    if args.interactions:
        save(
            args.interactions.stem,
            run(args.interactions.stem, read_table(args.interactions), args.holdout_days, args.quick),
        )
    else:
        for name in args.dataset or sorted(DATASETS):
            load, days = DATASETS[name]
            save(name, run(name, load(), days, args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
