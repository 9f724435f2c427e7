"""Feature typing (ml/rec_features.py) on real data, through `tessera recommend evaluate`.

    .venv/bin/python bench/rec_features.py                 # both datasets
    .venv/bin/python bench/rec_features.py --dataset online_retail

1. The Complete Journey (/work/shared/data/complete_journey): transactions_sample.parquet as
   purchases (household_id -> customer_key, product_id, transaction_timestamp -> occurred_at),
   products.parquet as item features (the products bought in the sample only, so that every run
   ranks the same catalogue; product_id is a float there and an integer in the transactions, so
   it is cast to an integer), demographics.parquet as user features. Prints what the typing
   decides for every column, then evaluates the hybrid without features, with item features and
   with item and user features on the same holdout.
2. Online Retail (/work/shared/data/online_retail): per StockCode, its Description (free text:
   must be refused) and the set of countries it was sold to before the holdout as a list column
   (multi-hot; before the holdout so the feature cannot leak the test period), for the items
   bought by customers with an id (the catalogue every run ranks). The countries are
   also written as "|"-joined text in a CSV to show the same typing; then the hybrid with and
   without the countries feature.

Every table goes into a temporary folder; results to bench/results/rec_features.json. The machine
is shared: the seconds are noisy, the metrics are not (seeded, one LightFM thread).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ml.rec_evaluation import holdout_start  # noqa: E402
from ml.rec_features import TypingOptions, report_lines, type_features  # noqa: E402
from tessera.cli import main as tessera  # noqa: E402

DATA = Path("/work/shared/data")
MODELS = "lightfm_hybrid,lightfm_ids_only,most_popular"
PASSED: list[str] = []  # --seed and --experiment, when the bench is given them


def evaluate(label: str, interactions: Path, holdout_days: int, *options: str) -> dict:
    """One `tessera recommend evaluate` run; its printed tables are kept out of the bench's output."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        argv = ["recommend", "evaluate", "--interactions", str(interactions), "--holdout-days", str(holdout_days)]
        argv += ["--models", MODELS, "--out", out.name, *PASSED, *options]
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            rc = tessera(argv)
        seconds = time.perf_counter() - started
        if rc != 0:
            raise SystemExit(f"{label}: tessera recommend evaluate exited {rc}")
        result = json.loads(Path(out.name).read_text())
    row = {"run": label, "seconds": round(seconds, 1), "split": result["split"], "features": result["features"]}
    for model in MODELS.split(","):
        warm = result["metrics"][model]["warm"]
        row[model] = {m: warm[m] for m in ("precision_at_10", "ndcg_at_10", "users")}
    row["cold_users_lightfm_hybrid_ndcg_at_10"] = result["metrics"]["lightfm_hybrid"]["cold_users"]["ndcg_at_10"]
    hybrid = row["lightfm_hybrid"]
    print(
        f"| {label} | {hybrid['precision_at_10']:.4f} | {hybrid['ndcg_at_10']:.4f} | "
        f"{row['lightfm_ids_only']['ndcg_at_10']:.4f} | {row['most_popular']['ndcg_at_10']:.4f} | "
        f"{int(hybrid['users'])} | {seconds:.0f} |"
    )
    return row


def print_typing(frame: pl.DataFrame, key: str, table: str, options: TypingOptions | None = None) -> list[dict]:
    typed = type_features(frame, key, table, options)
    for line in report_lines(typed.choices):
        print(f"  {line}")
    return [c.as_dict() for c in typed.choices]


def refusal(interactions: Path, items: Path, holdout_days: int) -> str:
    """What `tessera recommend evaluate` says about a feature file it refuses."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = tessera(
            [
                *("recommend", "evaluate", "--interactions", str(interactions), "--item-features", str(items)),
                *("--holdout-days", str(holdout_days), "--models", "most_popular"),
            ]
        )
    if rc != 2:
        raise SystemExit(f"expected {items} to be refused (exit 2), got exit {rc}")
    return err.getvalue().strip()


HEADER = (
    "| run | hybrid P@10 | hybrid NDCG@10 | ids-only NDCG@10 | most-popular NDCG@10 | warm users | seconds |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def complete_journey(tmp: Path, holdout_days: int) -> dict:
    source = DATA / "complete_journey"
    inter = pl.read_parquet(source / "transactions_sample.parquet").select(
        pl.col("household_id").cast(pl.String).alias("customer_key"),
        pl.col("product_id").cast(pl.String),
        pl.lit("purchase").alias("interaction_type"),
        pl.col("transaction_timestamp")
        .str.to_datetime(time_zone="UTC")
        .dt.replace_time_zone(None)
        .alias("occurred_at"),
    )
    bought = inter["product_id"].unique().implode()
    products = (
        pl.read_parquet(source / "products.parquet")
        .with_columns(pl.col("product_id").cast(pl.Int64).cast(pl.String))
        .filter(pl.col("product_id").is_in(bought))
    )
    demographics = pl.read_parquet(source / "demographics.parquet").rename({"household_id": "customer_key"})
    demographics = demographics.with_columns(pl.col("customer_key").cast(pl.String))
    inter.write_parquet(tmp / "cj_interactions.parquet")
    products.write_parquet(tmp / "cj_products.parquet")
    demographics.write_parquet(tmp / "cj_demographics.parquet")
    print(
        f"\n## Complete Journey: {len(inter):,} purchases, {inter['customer_key'].n_unique():,} households, "
        f"{inter['product_id'].n_unique():,} products ({len(products):,} of them in products.parquet), "
        f"{len(demographics):,} households with demographics\n"
    )
    print("typing as the data decides it (products bought in the sample):")
    typing = {"items": print_typing(products, "product_id", "items")}
    print("  with --categorical-feature manufacturer_id (a code, not a quantity):")
    as_code = TypingOptions(categorical=frozenset({"manufacturer_id"}))
    typing["items_manufacturer_as_code"] = print_typing(
        products.select("product_id", "manufacturer_id"), "product_id", "items", as_code
    )
    typing["users"] = print_typing(demographics, "customer_key", "users")
    interactions = tmp / "cj_interactions.parquet"
    items = ["--item-features", str(tmp / "cj_products.parquet"), "--categorical-feature", "manufacturer_id"]
    users = ["--user-features", str(tmp / "cj_demographics.parquet")]
    print(f"\nholdout: the last {holdout_days} days; warm slice (new items for known households)\n\n{HEADER}")
    runs = [
        evaluate("no features", interactions, holdout_days),
        evaluate("item features, manufacturer_id bucketed", interactions, holdout_days, *items[:2]),
        evaluate("item features", interactions, holdout_days, *items),
        evaluate("item + user features", interactions, holdout_days, *items, *users),
    ]
    return {"typing": typing, "runs": runs}


def online_retail(tmp: Path, holdout_days: int) -> dict:
    lines = pl.read_parquet(DATA / "online_retail" / "online_retail.parquet")
    sales = lines.filter(~pl.col("InvoiceNo").str.starts_with("C") & (pl.col("Quantity") > 0))
    inter = sales.filter(pl.col("CustomerID").is_not_null()).select(
        pl.col("CustomerID").cast(pl.Int64).cast(pl.String).alias("customer_key"),
        pl.col("StockCode").alias("product_id"),
        pl.lit("purchase").alias("interaction_type"),
        pl.col("InvoiceDate").alias("occurred_at"),
    )
    split_at = holdout_start(inter["occurred_at"], holdout_days)
    # an item's commonest description (ties: the first in text order), and where it sold before the holdout
    descriptions = (
        sales.group_by("StockCode", "Description")
        .len()
        .sort(["StockCode", "len", "Description"], descending=[False, True, False])
        .unique("StockCode", keep="first", maintain_order=True)
        .select(pl.col("StockCode").alias("product_id"), "Description")
    )
    countries = (
        sales.filter(pl.col("InvoiceDate") < split_at)
        .group_by("StockCode")
        .agg(pl.col("Country").unique().sort().alias("countries"))
        .rename({"StockCode": "product_id"})
    )
    # the items bought by known customers only, so that every run ranks the same catalogue
    items = (
        descriptions.filter(pl.col("product_id").is_in(inter["product_id"].unique().implode()))
        .join(countries, on="product_id", how="left")
        .sort("product_id")
    )
    inter.write_parquet(tmp / "or_interactions.parquet")
    items.write_parquet(tmp / "or_items.parquet")
    items.select("product_id", pl.col("countries").list.join("|")).write_csv(tmp / "or_countries.csv")
    items.select("product_id", "countries").write_parquet(tmp / "or_countries.parquet")
    per_item = items["countries"].list.len()
    print(
        f"\n## Online Retail: {len(inter):,} purchase lines, {inter['customer_key'].n_unique():,} customers, "
        f"{inter['product_id'].n_unique():,} items; countries before {split_at.date()}: "
        f"{per_item.mean():.2f} per item on average, up to {per_item.max()}\n"
    )
    interactions = tmp / "or_interactions.parquet"
    refused = refusal(interactions, tmp / "or_items.parquet", holdout_days)
    print(f"Description and countries as item features:\n  {refused}")
    print("the countries alone, as a Parquet list column and as '|'-joined text in a CSV:")
    typing = {"list": print_typing(items.select("product_id", "countries"), "product_id", "items")}
    typing["pipe_text"] = print_typing(pl.read_csv(tmp / "or_countries.csv"), "product_id", "items")
    print(f"\nholdout: the last {holdout_days} days from {split_at.date()}\n\n{HEADER}")
    runs = [
        evaluate("no features", interactions, holdout_days),
        evaluate(
            "countries (list), Description dropped",
            interactions,
            holdout_days,
            *("--item-features", str(tmp / "or_items.parquet"), "--drop-feature", "Description"),
        ),
    ]
    return {"refused": refused, "typing": typing, "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--holdout-days", type=int, default=30)
    parser.add_argument("--dataset", choices=["complete_journey", "online_retail"], help="only this one")
    parser.add_argument("--seed", type=int, help="the models' seed (default: RecommenderParams.seed)")
    parser.add_argument("--experiment", help="also log every evaluation to this MLflow experiment (TESSERA_DATA_DIR's)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "rec_features.json")
    args = parser.parse_args()
    if args.seed is not None:
        PASSED.extend(["--seed", str(args.seed)])
    if args.experiment:
        PASSED.extend(["--experiment", args.experiment])
    results = {"seed": args.seed}
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in (("complete_journey", complete_journey), ("online_retail", online_retail)):
            if args.dataset in (None, name):
                results[name] = run(Path(tmp), args.holdout_days)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(f"_{part}" for part in (args.dataset, None if args.seed is None else f"seed{args.seed}") if part)
    out = args.out.with_stem(args.out.stem + suffix)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
