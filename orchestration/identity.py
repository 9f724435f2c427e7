"""Identity resolution between the two halves of the dbt project, its gates and its evaluation."""

import json
import time
from datetime import datetime, timezone

import dagster as dg
import pandas as pd

from orchestration.dbt import model_key
from orchestration.metadata import run_metadata, table_metadata
from orchestration.resources import DUCKDB_POOL, TesseraResource
from tessera import markdown
from tessera.db import table_exists
from tessera.identity.config import load_mapping
from tessera.identity.engine import resolve
from tessera.identity.evaluate import evaluate_clusters
from tessera.identity.stable_ids import HISTORY_COLUMNS, assign_stable_ids
from tessera.settings import PROJECT_ROOT

IDENTITY_MAP_KEY = dg.AssetKey(["identity", "identity_map"])
EVALUATION_KEY = dg.AssetKey(["identity", "identity_evaluation"])
PIPELINE_MAPPING = PROJECT_ROOT / "config" / "identity_mapping.yaml"
GROUP = "identity"

DDL = [
    "create schema if not exists identity",
    """create table if not exists identity.identity_merge_history (
        run_id varchar, event_at timestamp, event_type varchar, customer_id varchar,
        other_customer_id varchar, record_count integer, evidence varchar)""",
    """create table if not exists identity.resolution_runs (
        run_id varchar, run_at timestamp, records bigint, clusters bigint, merge_rate double,
        max_cluster_size integer, deterministic_links bigint, fuzzy_links bigint, refused_links bigint,
        candidate_pairs bigint, id_changes bigint, stats varchar)""",
]


class IdentityRunConfig(dg.Config):
    match_weight: float = 8.0
    max_records_per_identifier: int = 4
    max_block_size: int = 200


@dg.asset(
    key=IDENTITY_MAP_KEY,
    deps=[model_key("int_person_records")],
    group_name=GROUP,
    description=(
        "Persisted identity map: every person record (CRM profile) with its stable tessera customer id. "
        "Deterministic links on email, phone and loyalty card, Fellegi-Sunter fuzzy links on names, birth "
        "date, address and postcode, conflict-aware clustering, then stable ids: existing ids are kept, "
        "merges and splits go to identity.identity_merge_history with their evidence."
    ),
    kinds={"python", "duckdb"},
    owners=["team:data-platform"],
    pool=DUCKDB_POOL,
)
def identity_map(
    context: dg.AssetExecutionContext, tessera: TesseraResource, config: IdentityRunConfig
) -> dg.MaterializeResult:
    mapping = load_mapping(PIPELINE_MAPPING).with_overrides(
        match_weight=config.match_weight,
        max_records_per_identifier=config.max_records_per_identifier,
        max_block_size=config.max_block_size,
        seed=tessera.settings().seed,
    )
    started = time.perf_counter()
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    with tessera.duckdb() as con:
        result = resolve(con, "intermediate.int_person_records", mapping)
        for ddl in DDL:
            con.execute(ddl)
        previous = (
            con.execute("select record_id, customer_id, first_seen_at, assigned_at from identity.identity_map").df()
            if table_exists(con, "identity", "identity_map")
            else pd.DataFrame(columns=["record_id", "customer_id", "first_seen_at", "assigned_at"])
        )
        stable = assign_stable_ids(previous, result.assignments, result.edges)
        current = stable.identity_map.merge(
            previous.rename(columns={"customer_id": "previous_customer_id"}), on="record_id", how="left"
        )
        changed = current["previous_customer_id"].notna() & (current["customer_id"] != current["previous_customer_id"])
        current["first_seen_at"] = current["first_seen_at"].fillna(now)
        current["assigned_at"] = current["assigned_at"].where(~changed & current["previous_customer_id"].notna(), now)
        events = stable.events.copy()
        events.insert(0, "event_at", now)
        events.insert(0, "run_id", context.run_id)
        links = result.edges.assign(run_id=context.run_id)
        stats = {
            **result.stats,
            "id_changes": int(changed.sum()),
            "new_records": int(current["previous_customer_id"].isna().sum()),
        }

        con.register("map_df", current[["record_id", "customer_id", "first_seen_at", "assigned_at"]])
        con.register("events_df", events[["run_id", "event_at", *HISTORY_COLUMNS]])
        con.register("links_df", links)
        con.execute("begin transaction")
        try:
            con.execute("create or replace table identity.identity_map as select * from map_df order by record_id")
            con.execute("insert into identity.identity_merge_history select * from events_df")
            con.execute("create or replace table identity.identity_links as select * from links_df")
            con.execute(
                "insert into identity.resolution_runs values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    context.run_id,
                    now,
                    stats["records"],
                    stats["clusters"],
                    stats["merge_rate"],
                    stats["max_cluster_size"],
                    stats["deterministic_links"],
                    stats["fuzzy_links"],
                    stats["refused_links"],
                    stats["candidate_pairs"],
                    stats["id_changes"],
                    json.dumps(stats, default=str),
                ],
            )
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
        finally:
            for name in ("map_df", "events_df", "links_df"):
                con.unregister(name)
        table = table_metadata(con, "identity.identity_map")
    weights = (
        result.weights.round(3).to_markdown(index=False) if result.weights is not None else "(no fuzzy attributes)"
    )
    return dg.MaterializeResult(
        metadata={
            **table,
            **run_metadata(started, len(current)),
            "customers": stats["clusters"],
            "merge_rate": dg.MetadataValue.float(float(stats["merge_rate"])),
            "id_changes": stats["id_changes"],
            "new_records": stats["new_records"],
            "deterministic_links": stats["deterministic_links"],
            "fuzzy_links": stats["fuzzy_links"],
            "refused_links": stats["refused_links"],
            "max_cluster_size": stats["max_cluster_size"],
            "candidate_pairs_per_rule": dg.MetadataValue.json(stats["candidate_pairs_per_rule"]),
            "skipped_blocks_per_rule": dg.MetadataValue.json(stats["skipped_blocks_per_rule"]),
            "history_events": dg.MetadataValue.json(events["event_type"].value_counts().to_dict()),
            "match_weights": dg.MetadataValue.md(weights),
        }
    )


@dg.asset_check(
    pool=DUCKDB_POOL,  # it reads the DuckDB file: never beside another run's writer
    asset=IDENTITY_MAP_KEY,
    blocking=True,
    description="No customer holds more person records than TESSERA_IDENTITY_MAX_CLUSTER_SIZE (an over-merge guard).",
)
def identity_cluster_size_within_limit(tessera: TesseraResource) -> dg.AssetCheckResult:
    limit = tessera.settings().identity_max_cluster_size
    with tessera.duckdb(read_only=True) as con:
        largest = con.execute(
            "select count(*) n from identity.identity_map group by customer_id order by n desc limit 5"
        ).fetchall()
    biggest = largest[0][0] if largest else 0
    return dg.AssetCheckResult(
        passed=biggest <= limit,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "largest_cluster": biggest,
            "limit": limit,
            # sizes only: a cluster's customer_id is a person's key, kept out of the event log
            # (find the clusters with: select customer_id, count(*) from identity.identity_map group by 1 order by 2 desc)
            "largest_cluster_sizes": dg.MetadataValue.json([n for (n,) in largest]),
        },
    )


@dg.asset_check(
    pool=DUCKDB_POOL,  # it reads the DuckDB file: never beside another run's writer
    asset=IDENTITY_MAP_KEY,
    blocking=True,
    description="The merge rate moved by at most TESSERA_IDENTITY_MAX_MERGE_RATE_DRIFT since the previous run.",
)
def identity_merge_rate_drift_within_limit(tessera: TesseraResource) -> dg.AssetCheckResult:
    limit = tessera.settings().identity_max_merge_rate_drift
    with tessera.duckdb(read_only=True) as con:
        runs = con.execute("select merge_rate from identity.resolution_runs order by run_at desc limit 2").fetchall()
    if len(runs) < 2:
        return dg.AssetCheckResult(
            passed=True, metadata={"note": "first run: nothing to compare", "merge_rate": runs[0][0] if runs else None}
        )
    drift = abs(runs[0][0] - runs[1][0])
    return dg.AssetCheckResult(
        passed=drift <= limit,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"merge_rate": runs[0][0], "previous_merge_rate": runs[1][0], "drift": drift, "limit": limit},
    )


@dg.asset(
    key=EVALUATION_KEY,
    deps=[IDENTITY_MAP_KEY],
    group_name=GROUP,
    description=(
        "Identity quality against the demo generator's ground truth (TESSERA_TRUTH_DIR): pairwise "
        "precision, recall and F1 and cluster-level figures, kept in identity.evaluation_history. "
        "Real data has no ground truth: the asset then says so and computes nothing."
    ),
    kinds={"python", "duckdb"},
    owners=["team:data-platform"],
    pool=DUCKDB_POOL,
)
def identity_evaluation(context: dg.AssetExecutionContext, tessera: TesseraResource) -> dg.MaterializeResult:
    started = time.perf_counter()
    settings = tessera.settings()
    truth_path = settings.truth_dir / "record_to_person.csv"
    if not truth_path.exists():
        return dg.MaterializeResult(metadata={"ground_truth": f"not available at {truth_path}; nothing evaluated"})
    truth = pd.read_csv(truth_path, dtype=str)
    truth = truth.loc[truth["source"] == "customers", ["record_id", "person_id"]]
    with tessera.duckdb() as con:
        predicted = con.execute("select record_id, customer_id as cluster_id from identity.identity_map").df()
        metrics = evaluate_clusters(predicted, truth)
        con.execute(
            "create table if not exists identity.evaluation_history (run_id varchar, evaluated_at timestamp, metrics varchar)"
        )
        con.execute(
            "insert into identity.evaluation_history values (?, ?, ?)",
            [context.run_id, datetime.now(timezone.utc).replace(tzinfo=None), json.dumps(metrics)],
        )
        history = con.execute(
            "select evaluated_at, metrics from identity.evaluation_history order by evaluated_at desc limit 10"
        ).fetchall()
        table_meta = table_metadata(con, "identity.evaluation_history")
    table = markdown.table(
        [(f"{at:%Y-%m-%d %H:%M}", *(f"{json.loads(m)[f'pairwise_{x}']:.4f}" for x in ("precision", "recall", "f1"))) for at, m in history],
        ["evaluated at", "precision", "recall", "F1"],
    )
    return dg.MaterializeResult(
        metadata={
            **{k: (dg.MetadataValue.float(float(v)) if isinstance(v, float) else v) for k, v in metrics.items()},
            "history": dg.MetadataValue.md(table),
            **table_meta,
            **run_metadata(started, len(predicted)),
        }
    )
