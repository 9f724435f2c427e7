"""Source extraction: one asset per landing source, loading its files into raw.<source>."""

import dagster as dg

from orchestration.resources import DUCKDB_POOL, TesseraResource
from tessera.contract import SOURCES, Source
from tessera.landing import load_source

SOURCE_GROUP = "sources"


def source_asset_key(source: Source) -> dg.AssetKey:
    # dagster-dbt names a dbt source table ["raw", "<table>"]; the loader asset owns that key.
    return dg.AssetKey(["raw", source.name])


def preview_markdown(con, table: str, limit: int = 5) -> str:
    df = con.execute(f"select * from {table} limit {int(limit)}").df()
    return df.to_markdown(index=False) if len(df) else "(no rows)"


def table_schema(con, table: str) -> dg.TableSchema:
    rows = con.execute(f"describe {table}").fetchall()
    return dg.TableSchema(columns=[dg.TableColumn(name=r[0], type=r[1]) for r in rows])


def build_source_asset(source: Source) -> dg.AssetsDefinition:
    @dg.asset(
        key=source_asset_key(source),
        group_name=SOURCE_GROUP,
        description=f"{source.description} Landing folder: <landing>/{source.name}/ (CSV, Parquet, JSON Lines).",
        kinds={"python", "duckdb"},
        owners=["team:data-platform"],
        pool=DUCKDB_POOL,
    )
    def _load(context: dg.AssetExecutionContext, tessera: TesseraResource) -> dg.MaterializeResult:
        settings = tessera.settings()
        with tessera.duckdb() as con:
            report = load_source(
                con,
                source,
                settings.landing_dir,
                max_line_bytes=settings.max_line_bytes,
                max_field_chars=settings.max_field_chars,
            )
            preview = preview_markdown(con, source.raw_table)
            schema = table_schema(con, source.raw_table)
        if report.missing_columns:
            context.log.warning(f"{source.name}: files lack contract columns {report.missing_columns}")
        if report.rejected:
            context.log.warning(
                f"{source.name}: {report.rejected} records could not be parsed and went to raw.load_rejects "
                f"{report.rejected_per_file}"
            )
        if report.extra_columns:
            context.log.warning(f"{source.name}: files carry columns outside the contract {report.extra_columns}")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": report.rows,
                # nothing lost: records in the files = rows loaded + records quarantined at load
                "landing_records": report.records_read,
                "quarantined_at_load": report.rejected,
                "quarantined_per_file": dg.MetadataValue.json(report.rejected_per_file),
                "dagster/column_schema": schema,
                "table": source.raw_table,
                "files": len(report.files),
                "rows_per_file": dg.MetadataValue.json(report.rows_per_file),
                "skipped_empty_files": dg.MetadataValue.json(report.skipped_empty_files),
                "missing_columns": dg.MetadataValue.json(report.missing_columns),
                "extra_columns": dg.MetadataValue.json(report.extra_columns),
                "preview": dg.MetadataValue.md(preview),
            }
        )

    return _load


source_assets = [build_source_asset(s) for s in SOURCES]

# Tables every source asset writes its own rows of, declared so the graph shows where the dbt
# quarantine and reconciliation models read them from (no asset materializes them on its own).
load_tables = [
    dg.AssetSpec(
        ["raw", "load_rejects"],
        group_name=SOURCE_GROUP,
        description="Records the loaders could not parse or that hold a value over the size limit: "
        "source, file, record number, reason and the content as delivered (tessera/landing.py).",
        kinds={"duckdb"},
    ),
    dg.AssetSpec(
        ["raw", "load_audit"],
        group_name=SOURCE_GROUP,
        description="Per landing file and load: records in the file (counted without DuckDB), loaded, quarantined.",
        kinds={"duckdb"},
    ),
]
