"""Identity resolution benchmark: quality, blocking recall, time and memory at a chosen size.

    .venv/bin/python bench/identity_bench.py --people 2000            # demo size
    .venv/bin/python bench/identity_bench.py --people 890000          # about 1,000,000 records

It generates CRM profiles with the demo generator (same mess: two to four profiles for about one
person in ten, with case, typo and format variants, a quarter of the extra ones sharing no email,
phone or card, and slips in birth dates, emails, phones and cards), resolves them with the
pipeline's engine and mapping, and reports against the generator's ground truth:
- pairwise precision / recall / F1 and cluster-level figures;
- how many true pairs the blocking keeps (with the deterministic links);
- a baseline on the same candidate pairs: Jaro-Winkler >= 0.9 on both names and equal birth date;
- wall time of the resolve step and peak RSS of the process.
Results go to bench/results/identity_<records>.json and are printed as Markdown.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tessera.identity.config import load_mapping  # noqa: E402
from tessera.identity.engine import PAIRS, RECORDS, resolve  # noqa: E402
from tessera.identity.evaluate import evaluate_clusters  # noqa: E402
from tessera.identity.stable_ids import assign_stable_ids  # noqa: E402
from tessera.landing.generate import GenerateConfig, _crm_profiles, _people  # noqa: E402
from tessera.markdown import table  # noqa: E402

MAPPING = ROOT / "config" / "identity_mapping.yaml"


def make_records(people: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    config = GenerateConfig(customers=people, days=30, seed=seed, end_date=date(2026, 10, 31))
    rng = np.random.default_rng(seed)
    persons = _people(rng, config)
    profiles, truth = _crm_profiles(rng, config, persons)
    profiles = profiles.rename({"customer_id": "record_id", "phone": "phone_e164"}).to_pandas()
    truth = truth.select("record_id", "person_id").to_pandas()
    return profiles, truth


def pair_completeness(con: duckdb.DuckDBPyConnection, truth: pd.DataFrame, deterministic: pd.DataFrame) -> dict:
    con.register("truth_df", truth)
    con.register("det_df", deterministic[["record_l", "record_r"]])
    out = con.execute(
        f"""
        with t as (select record_id, person_id from truth_df),
        total as (select sum(c * (c - 1) / 2) as n from (select count(*) c from t group by person_id)),
        kept as (
            select least(record_l, record_r) l, greatest(record_l, record_r) r from det_df
            union
            select record_l, record_r from {PAIRS}
        ),
        kept_true as (
            select count(*) as n from kept k join t a on a.record_id = k.l join t b on b.record_id = k.r
            where a.person_id = b.person_id
        )
        select (select n from total) as true_pairs, (select n from kept_true) as true_pairs_kept
        """
    ).fetchall()[0]
    con.unregister("truth_df")
    con.unregister("det_df")
    return {
        "true_pairs": int(out[0]),
        "true_pairs_kept_by_blocking_and_deterministic_links": int(out[1]),
        "pair_completeness": float(out[1]) / max(float(out[0]), 1.0),
    }


def baseline_rule(con: duckdb.DuckDBPyConnection, truth: pd.DataFrame) -> dict:
    """Jaro-Winkler >= 0.9 on given name and surname and equal birth date, on the same candidates."""
    pairs = con.execute(
        f"""
        select p.record_l, p.record_r from {PAIRS} p
        join {RECORDS} l on l.record_id = p.record_l join {RECORDS} r on r.record_id = p.record_r
        where jaro_winkler_similarity(l.given_name, r.given_name) >= 0.9
          and jaro_winkler_similarity(l.surname, r.surname) >= 0.9
          and l.birth_date = r.birth_date
        """
    ).df()
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ids = pd.Series(np.arange(len(truth)), index=truth["record_id"].to_numpy())
    li, ri = ids.loc[pairs["record_l"]].to_numpy(), ids.loc[pairs["record_r"]].to_numpy()
    _, labels = connected_components(
        coo_matrix((np.ones(len(li)), (li, ri)), shape=(len(ids), len(ids))), directed=False
    )
    predicted = pd.DataFrame({"record_id": truth["record_id"].to_numpy(), "cluster_id": labels})
    return evaluate_clusters(predicted, truth)


def stable_id_churn(records: pd.DataFrame, mapping, seed: int, memory_limit: str) -> dict:
    """Stable ids under a rerun and under churn: 10 % of the records (seeded) leave and come back.
    Counts the untouched records (never removed) whose id changed from the first run."""

    seconds: dict[str, float] = {}

    def run(step: str, frame: pd.DataFrame, previous=None):
        con = duckdb.connect(config={"memory_limit": memory_limit, "threads": 2})
        con.register("records_df", frame)
        con.execute("create table person_records as select * from records_df")
        started = time.perf_counter()
        # each run hands its matcher state to the next, as the pipeline does through the warehouse
        result = resolve(con, "person_records", mapping, previous=previous)
        seconds[step] = round(time.perf_counter() - started, 2)
        con.close()
        return result

    def ids(previous: pd.DataFrame, result) -> pd.DataFrame:
        return assign_stable_ids(previous, result.assignments, result.edges).identity_map

    empty = pd.DataFrame(columns=["record_id", "customer_id"])
    full = run("first", records)
    first = ids(empty, full)
    again = run("rerun", records, full.state)
    rerun = ids(first, again)
    rng = np.random.default_rng(seed)
    leaving = set(records["record_id"].to_numpy()[rng.random(len(records)) < 0.1])
    gone = run("ten_percent_left", records[~records["record_id"].isin(leaving)], again.state)
    without = ids(first, gone)
    came_back = run("came_back", records, gone.state)
    back = ids(without, came_back)

    def changed(a: pd.DataFrame, b: pd.DataFrame, only: set | None = None) -> int:
        joined = a.merge(b, on="record_id", suffixes=("_a", "_b"))
        if only is not None:
            joined = joined[joined["record_id"].isin(only)]
        return int((joined["customer_id_a"] != joined["customer_id_b"]).sum())

    untouched = set(records["record_id"]) - leaving
    return {
        "rerun_id_changes": changed(first, rerun),
        "records_leaving_and_coming_back": len(leaving),
        "untouched_records": len(untouched),
        "untouched_records_whose_id_changed": changed(first, back, untouched),
        "resolve_seconds": seconds,
        "came_back_training": came_back.stats["training"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--memory-limit", default="6GB")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--churn", action="store_true", help="also measure stable-id changes (four more resolves)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    records, truth = make_records(args.people, args.seed)
    generated_s = time.perf_counter() - t0
    truth["person_id"] = truth["person_id"].astype(str)

    con = duckdb.connect(config={"memory_limit": args.memory_limit, "threads": 2})
    con.register("records_df", records)
    con.execute("create table person_records as select * from records_df")
    con.unregister("records_df")
    mapping = load_mapping(MAPPING)

    t1 = time.perf_counter()
    result = resolve(con, "person_records", mapping)
    resolve_s = time.perf_counter() - t1
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024

    quality = evaluate_clusters(result.assignments, truth)
    blocking = pair_completeness(con, truth, result.edges[result.edges["kind"] == "deterministic"])
    baseline = None if args.no_baseline else baseline_rule(con, truth)

    churn = stable_id_churn(records, mapping, args.seed, args.memory_limit) if args.churn else None
    report = {
        "stable_id_churn": churn,
        "records": len(records),
        "people": args.people,
        "seed": args.seed,
        "generate_seconds": round(generated_s, 2),
        "resolve_seconds": round(resolve_s, 2),
        "peak_rss_gb": round(peak_rss_gb, 3),
        "quality": quality,
        "blocking": blocking,
        "engine_stats": result.stats,
        "resolve_steps_seconds": result.timings,
        "baseline_jw_names_and_dob": baseline,
    }
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"identity_{len(records)}.json"
    out.write_text(json.dumps(report, indent=2, default=str))

    print(f"## Identity benchmark: {len(records):,} records of {args.people:,} people (seed {args.seed})\n")
    figures = [
        ("resolve wall time", f"{resolve_s:.1f} s"),
        ("peak RSS (whole process)", f"{peak_rss_gb:.2f} GB"),
        *(
            (k, f"{quality[k]:.4f}")
            for k in ("pairwise_precision", "pairwise_recall", "pairwise_f1", "exact_cluster_share")
        ),
        ("over-merged clusters / split people", f"{quality['over_merged_clusters']} / {quality['split_people']}"),
        ("blocking + deterministic pair completeness", f"{blocking['pair_completeness']:.4f}"),
        *([("baseline (JW names + equal DOB) F1", f"{baseline['pairwise_f1']:.4f}")] if baseline else []),
    ]
    print(table(figures, ["figure", "value"]))
    print(f"\nresolve steps (s): {result.timings}")
    if churn:
        print(f"stable ids: {churn}")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
