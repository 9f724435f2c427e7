"""Quality gates: one blocking Great Expectations check per raw source.

A failing gate is an ERROR-severity check with blocking=True, so Dagster skips every asset
downstream of that source in the same run: dbt models, the recommender and the published outputs.
"""

import dagster as dg

from orchestration.resources import DUCKDB_POOL, TesseraResource
from orchestration.sources import source_asset_key
from tessera.contract import SOURCES, Source
from tessera.quality import validate_table
from tessera.settings import EXPECTATIONS_DIR


def gx_check_name(source: Source) -> str:
    return f"gx_raw_{source.name}"


def build_gx_check(source: Source) -> dg.AssetChecksDefinition:
    suite_path = EXPECTATIONS_DIR / f"raw_{source.name}.json"

    @dg.asset_check(
        asset=source_asset_key(source),
        name=gx_check_name(source),
        blocking=True,
        pool=DUCKDB_POOL,  # it reads the DuckDB file: never beside another run's writer
        description=f"Great Expectations suite expectations/{suite_path.name} on raw.{source.name}.",
    )
    def _gate(tessera: TesseraResource) -> dg.AssetCheckResult:
        settings = tessera.settings()
        with tessera.duckdb(read_only=True) as con:
            result = validate_table(con, source.raw_table, suite_path, settings.gx_max_rows, settings.seed)
        return dg.AssetCheckResult(
            passed=result.success,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                f"{result.evaluated - len(result.failed)}/{result.evaluated} expectations passed"
                + (
                    f"; failed: {', '.join(f['expectation'] + '(' + str(f['column']) + ')' for f in result.failed)}"
                    if result.failed
                    else ""
                )
            ),
            metadata={
                "suite": suite_path.name,
                "rows_validated": result.rows_validated,
                "rows_in_table": result.rows_in_table,
                "sampled": result.sampled,
                "expectations_evaluated": result.evaluated,
                "expectations_failed": len(result.failed),
                "failed_expectations": dg.MetadataValue.json(result.failed),
                "results": dg.MetadataValue.json(result.results),
            },
        )

    return _gate


gx_checks = [build_gx_check(s) for s in SOURCES]
