"""Right to erasure as an asset: after the customer view is built, before any model or publish.

`privacy/erasure` removes every person with an erasure request from every layer and snapshot
(tessera/privacy/erasure.py) and logs it in privacy.erasure_log. Its blocking check
`no_erased_identifier_remains` hashes every identifier-holding value of every table and every
published file and fails on any that is on the suppression list: nothing is trained or published until it
passes.
"""

import time
from pathlib import Path

import dagster as dg

from orchestration.dbt import dbt_marts_assets, dbt_staging_assets
from orchestration.keys import ERASURE_KEY, IDENTITY_MAP_KEY, PRIVACY_GROUP
from orchestration.metadata import run_metadata, table_metadata
from orchestration.recovery import run_in_progress
from orchestration.resources import DUCKDB_POOL, TesseraResource
from tessera.privacy import byte_residue
from tessera.privacy.erasure_run import run_erasure

RESIDUE_CHECK = "no_erased_identifier_remains"
BYTES_CHECK = "no_erased_bytes_remain"


@dg.asset(
    key=ERASURE_KEY,
    # after every dbt model, so this run's tables are erased too (dbt rebuilds them clean next run)
    deps=[*dbt_staging_assets.keys, *dbt_marts_assets.keys, IDENTITY_MAP_KEY],
    group_name=PRIVACY_GROUP,
    description=(
        "Removes every person with an erasure request from raw, staging, the identity map, marts, "
        "features, ML tables, published tables and every retained snapshot version; keeps a salted-hash "
        "suppression list and an audit log (privacy.erasure_log). docs/privacy.md."
    ),
    kinds={"python", "duckdb"},
    owners=["team:data-platform"],
    pool=DUCKDB_POOL,
    check_specs=[
        dg.AssetCheckSpec(
            RESIDUE_CHECK,
            asset=ERASURE_KEY,
            description="No identifier-holding value of any table or published file hashes to an erased identifier.",
            blocking=True,
        ),
        dg.AssetCheckSpec(
            BYTES_CHECK,
            asset=ERASURE_KEY,
            description=(
                "After an erasure and the warehouse compaction: no file under the data directory, the "
                "Dagster home or the MLflow artifact store holds an erased value in its bytes (ignoring case)."
            ),
            blocking=True,
        ),
    ],
)
def erasure_asset(context: dg.AssetExecutionContext, tessera: TesseraResource):
    started = time.perf_counter()
    outcome = run_erasure(
        tessera.settings(),
        tessera.duckdb,
        context.run.run_id,
        Path(context.instance.root_directory),
        in_progress=lambda r: run_in_progress(context.instance, r),
    )
    with tessera.duckdb(read_only=True) as con:
        # what the asset keeps: the audit log (no identifiers in it, so its preview is safe)
        table = table_metadata(con, "privacy.erasure_log")
    context.log.info(outcome.summary())
    done, found, compaction = outcome.done, outcome.residue, outcome.compaction
    yield dg.MaterializeResult(
        metadata={
            **table,
            **run_metadata(started, outcome.rows_removed),
            "requests_this_run": done["requests"],
            "requests_completed": done["completed"],
            "requests_ever": outcome.requests_ever,
            "identifiers_by_kind": dg.MetadataValue.json(done["identifiers"]),
            "rows_removed": dg.MetadataValue.json(done["removed"]),
            "files": dg.MetadataValue.json(done["files"]),
            "compaction": dg.MetadataValue.json(compaction.__dict__ if compaction else None),
            "seconds_by_phase": dg.MetadataValue.json(done["seconds"]),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=RESIDUE_CHECK,
                passed=not found,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"places_with_residue": dg.MetadataValue.json(found), "residue": sum(found.values())},
            ),
            bytes_check(outcome.proof),
        ],
    )


def bytes_check(proof: byte_residue.Scan | None) -> dg.AssetCheckResult:
    if proof is None:
        return dg.AssetCheckResult(
            check_name=BYTES_CHECK,
            passed=True,
            description="No erasure completed in this run: nothing to look for.",
            metadata={"files_scanned": 0},
        )
    return dg.AssetCheckResult(
        check_name=BYTES_CHECK,
        passed=not proof.hits,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{proof.files} file(s), {proof.bytes} byte(s) under {', '.join(proof.roots)} scanned for the values "
            f"erased in this run; not scanned: {', '.join(proof.skipped) or 'nothing'}."
            + "".join(
                f" In {name}: " + ", ".join(f"{n} in {place}" for place, n in sorted(places.items())) + "."
                for name, places in sorted(proof.places.items())
            )
        ),
        metadata={
            "files_scanned": proof.files,
            "bytes_scanned": proof.bytes,
            "roots": dg.MetadataValue.json(proof.roots),
            "not_scanned": dg.MetadataValue.json(proof.skipped),
            "files_with_residue": dg.MetadataValue.json(proof.hits),
            "residue_places_in_duckdb_files": dg.MetadataValue.json(proof.places),
        },
    )
