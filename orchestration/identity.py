"""Identity resolution between the two halves of the dbt project, its gates and its evaluation."""

import time
from datetime import UTC, datetime

import dagster as dg

from orchestration.dbt import model_key
from orchestration.keys import EVALUATION_KEY, IDENTITY_GROUP, IDENTITY_MAP_KEY
from orchestration.metadata import run_metadata, table_metadata
from orchestration.resources import DUCKDB_POOL, TesseraResource
from tessera import markdown
from tessera.identity import store
from tessera.identity.config import load_mapping
from tessera.identity.engine import resolve
from tessera.settings import PROJECT_ROOT

PIPELINE_MAPPING = PROJECT_ROOT / "config" / "identity_mapping.yaml"
# the shop's declared identifiers of the person records (landing source identifiers) that staging
# passed and whose profile exists; the others are in the quarantine with their reason
DECLARED_IDENTIFIERS = (
    "(select customer_id as record_id, id_type, id_value "
    "from intermediate.int_person_identifiers where invalid_reason is null)"
)


class IdentityRunConfig(dg.Config):
    match_probability: float = 0.95
    max_records_per_identifier: int = 4
    max_block_size: int = 200
    # None: the mapping file's (config/identity_mapping.yaml)
    max_records_per_declared_identifier: int | None = None
    # train the model again and score every pair, instead of reusing the last run's model and
    # scores for the records that did not change (it also retrains by itself when the mapping or
    # settings changed, or the record count moved by more than the mapping's retrain_growth)
    retrain: bool = False


@dg.asset(
    key=IDENTITY_MAP_KEY,
    deps=[model_key("int_person_records"), model_key("int_person_identifiers")],
    group_name=IDENTITY_GROUP,
    description=(
        "Persisted identity map: every person record (CRM profile) with its stable tessera customer id. "
        "Deterministic links on email, phone, loyalty card and the shop's declared identifiers (a "
        "marketplace's person id, a login id), probabilistic links (Splink's Fellegi-Sunter model: graded "
        "levels on names, birth date, address, postcode and identifiers, term-frequency adjusted, trained "
        "without labels), clustering that refuses links its own comparisons contradict, then stable ids: existing ids are kept, "
        "merges and splits go to identity.identity_merge_history with their evidence. Incremental: a run "
        "reuses the last run's model and pair scores (identity.matcher_model, identity.matcher_pairs) and "
        "compares only the records that are new or changed (identity.record_fingerprints); it trains again "
        "when the mapping changed, the record count moved by more than retrain_growth, or `retrain` is set."
    ),
    kinds={"python", "duckdb"},
    owners=["team:data-platform"],
    pool=DUCKDB_POOL,
)
def identity_map(
    context: dg.AssetExecutionContext, tessera: TesseraResource, config: IdentityRunConfig
) -> dg.MaterializeResult:
    declared_cap = config.max_records_per_declared_identifier
    mapping = load_mapping(PIPELINE_MAPPING).with_overrides(
        match_probability=config.match_probability,
        max_records_per_identifier=config.max_records_per_identifier,
        max_block_size=config.max_block_size,
        seed=tessera.settings().seed,
        **({} if declared_cap is None else {"max_records_per_declared_identifier": declared_cap}),
    )
    started = time.perf_counter()
    with tessera.duckdb() as con:
        result = resolve(
            con,
            "intermediate.int_person_records",
            mapping,
            identifiers=DECLARED_IDENTIFIERS,
            previous=store.previous_state(con),
            retrain=config.retrain,
        )
        done = store.persist(con, result, context.run_id, utc_now())
        table = table_metadata(con, "identity.identity_map")
    stats = done.stats
    overshared = stats["overshared_declared_identifier_values"]
    if overshared:
        context.log.warning(
            f"declared identifier values held by more than {mapping.max_records_per_declared_identifier} "
            f"person records link nothing (max_records_per_declared_identifier), values per id type: {overshared}"
        )
    weights = (
        result.weights.round(3).to_markdown(index=False) if result.weights is not None else "(no fuzzy attributes)"
    )
    return dg.MaterializeResult(
        metadata={
            **table,
            **run_metadata(started, done.records),
            "customers": stats["clusters"],
            "merge_rate": dg.MetadataValue.float(float(stats["merge_rate"])),
            **{k: stats[k] for k in ("id_changes", "new_records", "deterministic_links", "fuzzy_links")},
            **{k: stats[k] for k in ("refused_links", "max_cluster_size")},
            "candidate_pairs": stats["candidate_pairs"],
            # full (and why) or incremental (records blocked and scored, earlier scores reused)
            "training": stats["training"],
            "changed_records": stats["changed_records"],
            # per compared attribute, the contradictions inside linked groups it was most against
            "cannot_links_by_attribute": dg.MetadataValue.json(stats["cannot_links_by_attribute"]),
            "skipped_blocks_per_key": dg.MetadataValue.json(stats["skipped_blocks_per_key"]),
            "prior_match_probability": dg.MetadataValue.float(float(stats.get("prior_match_probability", 0.0))),
            "training_notes": dg.MetadataValue.json(stats.get("training_notes", [])),
            # values shared too widely to link: per profile field, and per declared id type
            "overshared_identifier_values": dg.MetadataValue.json(stats["overshared_identifier_values"]),
            "declared_identifiers": stats["declared_identifiers"],
            "declared_links": stats["declared_links"],
            "overshared_declared_identifier_values": dg.MetadataValue.json(overshared),
            "max_records_per_declared_identifier": mapping.max_records_per_declared_identifier,
            "history_events": dg.MetadataValue.json(done.events["event_type"].value_counts().to_dict()),
            "match_weights": dg.MetadataValue.md(weights),
        }
    )


def utc_now() -> datetime:
    """Now in UTC without zone, as the warehouse keeps timestamps."""
    return datetime.now(UTC).replace(tzinfo=None)


@dg.asset_check(
    pool=DUCKDB_POOL,  # it reads the DuckDB file: never beside another run's writer
    asset=IDENTITY_MAP_KEY,
    blocking=True,
    description="No customer holds more person records than TESSERA_IDENTITY_MAX_CLUSTER_SIZE (an over-merge guard).",
)
def identity_cluster_size_within_limit(tessera: TesseraResource) -> dg.AssetCheckResult:
    limit = tessera.settings().identity_max_cluster_size
    with tessera.duckdb(read_only=True) as con:
        largest = store.largest_clusters(con)
    biggest = largest[0] if largest else 0
    return dg.AssetCheckResult(
        passed=biggest <= limit,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "largest_cluster": biggest,
            "limit": limit,
            # sizes only: a cluster's customer_id is a person's key, kept out of the event log
            # (find the clusters with: select customer_id, count(*) from identity.identity_map group by 1 order by 2 desc)
            "largest_cluster_sizes": dg.MetadataValue.json(largest),
        },
    )


# the person records of the resolutions store.last_merge_rates compares, newest first
LAST_RUNS_RECORDS = "select records from identity.resolution_runs order by run_at desc limit 2"


@dg.asset_check(
    pool=DUCKDB_POOL,  # it reads the DuckDB file: never beside another run's writer
    asset=IDENTITY_MAP_KEY,
    blocking=True,
    description="The merge rate moved by at most TESSERA_IDENTITY_MAX_MERGE_RATE_DRIFT since the previous run.",
)
def identity_merge_rate_drift_within_limit(tessera: TesseraResource) -> dg.AssetCheckResult:
    limit = tessera.settings().identity_max_merge_rate_drift
    with tessera.duckdb(read_only=True) as con:
        rates = store.last_merge_rates(con)
        records = [n for (n,) in con.execute(LAST_RUNS_RECORDS).fetchall()]
    if len(rates) < 2:
        return dg.AssetCheckResult(
            passed=True, metadata={"note": "first run: nothing to compare", "merge_rate": rates[0] if rates else None}
        )
    if 0 in records:
        # a resolution of no record has no merge rate (the engine reports 1.0): a shop whose first
        # person records arrive after runs on an anonymous clickstream, or that lost every record
        # (the raw customers gate judges that)
        return dg.AssetCheckResult(
            passed=True,
            metadata={"note": "a run resolved no person record: nothing to compare", "records": records},
        )
    drift = abs(rates[0] - rates[1])
    return dg.AssetCheckResult(
        passed=drift <= limit,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"merge_rate": rates[0], "previous_merge_rate": rates[1], "drift": drift, "limit": limit},
    )


@dg.asset(
    key=EVALUATION_KEY,
    deps=[IDENTITY_MAP_KEY],
    group_name=IDENTITY_GROUP,
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
    with tessera.duckdb() as con:
        metrics, records = store.evaluate_against_truth(con, truth_path, context.run_id, utc_now())
        history = store.evaluation_history(con)
        table_meta = table_metadata(con, "identity.evaluation_history")
    return dg.MaterializeResult(
        metadata={
            **{k: (dg.MetadataValue.float(float(v)) if isinstance(v, float) else v) for k, v in metrics.items()},
            "history": dg.MetadataValue.md(history_markdown(history)),
            **table_meta,
            **run_metadata(started, records),
        }
    )


def history_markdown(history: list[tuple[datetime, dict]]) -> str:
    rows = [
        (f"{at:%Y-%m-%d %H:%M}", *(f"{m[f'pairwise_{x}']:.4f}" for x in ("precision", "recall", "f1")))
        for at, m in history
    ]
    return markdown.table(rows, ["evaluated at", "precision", "recall", "F1"])
