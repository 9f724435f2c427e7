"""Source extraction: one asset per landing source, loading its files into raw.<source>."""

import time

import dagster as dg

from orchestration.metadata import (
    PERSONAL_COLUMN_NAMES,
    capped,
    declared_schema,
    run_metadata,
    shown_row_count,
    table_metadata,
)
from orchestration.resources import DUCKDB_POOL, TesseraResource
from tessera.landing.contract import SOURCES, Source
from tessera.landing.loader import AUDIT_TABLE, REJECTS_TABLE, LoadReport, load_source

SOURCE_GROUP = "sources"


def source_asset_key(source: Source) -> dg.AssetKey:
    # dagster-dbt names a dbt source table ["raw", "<table>"]; the loader asset owns that key.
    return dg.AssetKey(["raw", source.name])


class LoadConfig(dg.Config):
    """full_refresh: read every landing file again instead of only new and changed ones."""

    full_refresh: bool = False


def build_source_asset(source: Source) -> dg.AssetsDefinition:
    @dg.asset(
        key=source_asset_key(source),
        group_name=SOURCE_GROUP,
        description=f"{source.description} Landing folder: `<landing>/{source.name}/` (CSV, Parquet, JSON Lines); "
        "only new or changed files are read (config full_refresh reads them all).",
        kinds={"python", "duckdb", "great_expectations"},
        # the landing contract's columns, as delivered (tessera.column_docs)
        metadata={"dagster/column_schema": declared_schema(source.raw_table)},
        owners=["team:data-platform"],
        pool=DUCKDB_POOL,
    )
    def _load(context: dg.AssetExecutionContext, tessera: TesseraResource, config: LoadConfig) -> dg.MaterializeResult:
        started = time.perf_counter()
        settings = tessera.settings()
        with tessera.duckdb() as con:
            report = load_source(
                con,
                source,
                settings.landing_dir,
                max_line_bytes=settings.max_line_bytes,
                max_field_chars=settings.max_field_chars,
                full_refresh=config.full_refresh,
            )
            table = table_metadata(con, source.raw_table)
            side = side_table_observations(con, lambda key: shown_row_count(context.instance, key))
        for event in side:
            context.log_event(event)
        for warning in load_warnings(report):
            context.log.warning(warning)
        return dg.MaterializeResult(
            # file lists grow with the landing folder: each entry is capped
            metadata=capped(
                {
                    **table,
                    # records in the files read this run (new or changed files only)
                    **run_metadata(started, report.records_scanned),
                    "files_read": dg.MetadataValue.json(report.files_read),
                    "files_unchanged": len(report.files_unchanged),
                    "files_removed": dg.MetadataValue.json(report.files_removed),
                    "full_refresh": report.full_refresh,
                    # nothing lost: records in the files = rows loaded + records quarantined at load
                    "landing_records": report.records_read,
                    "quarantined_at_load": report.rejected,
                    "quarantined_per_file": dg.MetadataValue.json(report.rejected_per_file),
                    "files": len(report.files),
                    "rows_per_file": dg.MetadataValue.json(report.rows_per_file),
                    "skipped_empty_files": dg.MetadataValue.json(report.skipped_empty_files),
                    "missing_columns": dg.MetadataValue.json(report.missing_columns),
                    "extra_columns": dg.MetadataValue.json(report.extra_columns),
                    # entries of the folder not loaded, with why (raw.load_audit.not_loaded_reason)
                    "files_not_loaded": dg.MetadataValue.json(report.files_not_loaded),
                    # headers matched to contract columns ignoring case, per file
                    "renamed_columns": dg.MetadataValue.json(report.renamed_columns),
                }
            )
        )

    return _load


# the side tables every load writes besides raw.<source>: the audit of each file, the records it
# could not parse
LOAD_SIDE_TABLES = (AUDIT_TABLE, REJECTS_TABLE)


def side_table_observations(con, shown) -> list[dg.AssetObservation]:
    """An observation of each side table a load writes (LOAD_SIDE_TABLES) whose row count is no
    longer the one the UI shows for its asset (`shown(key)`): row count, schema and masked
    preview. Observed, as no step of their own materializes them."""
    events = []
    for name in LOAD_SIDE_TABLES:
        key, table = dg.AssetKey(["raw", name]), f"raw.{name}"
        [(rows,)] = con.execute(f"select count(*) from {table}").fetchall()
        if rows != shown(key):
            metadata = table_metadata(con, table, PERSONAL_COLUMN_NAMES)
            events.append(dg.AssetObservation(asset_key=key, metadata={**metadata, "changed_by": "the loaders"}))
    return events


def load_warnings(report: LoadReport) -> list[str]:
    """What a load leaves the operator to look at: contract columns missing or extra, records
    quarantined, files not loaded (TESSERA_LANDING_UNLOADED_FILES=warn: the load went on without them)."""
    name, warnings = report.source, []
    if report.missing_columns:
        warnings.append(f"{name}: files lack contract columns {report.missing_columns}")
    if report.rejected:
        warnings.append(
            f"{name}: {report.rejected} records could not be parsed and went to raw.load_rejects {report.rejected_per_file}"
        )
    if report.extra_columns:
        warnings.append(f"{name}: files carry columns outside the contract {report.extra_columns}")
    if report.files_not_loaded:
        warnings.append(
            f"{name}: {len(report.files_not_loaded)} file(s) not loaded, each audited with its reason: "
            f"{report.files_not_loaded}"
        )
    return warnings


source_assets = [build_source_asset(s) for s in SOURCES]


# Tables every source asset writes its own rows of, declared so the graph shows where the dbt
# quarantine and reconciliation models read them from (no asset materializes them on its own).
def _side_table(name: str, description: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        ["raw", name], group_name=SOURCE_GROUP, description=description, kinds={"duckdb"}, owners=["team:data-platform"]
    )


load_tables = [
    _side_table(
        "load_rejects",
        "Records the loaders could not parse or that hold a value over the size limit: "
        "source, file, record number, reason and the content as delivered (tessera/landing/loader.py).",
    ),
    _side_table(
        "erased_rows",
        "Positions of raw rows and rejected lines an erasure request removed (tessera/privacy/erasure.py).",
    ),
    _side_table(
        "load_audit", "Per landing file and load: records in the file (counted without DuckDB), loaded, quarantined."
    ),
]
