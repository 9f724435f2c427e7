"""Right to erasure as an asset: after the customer view is built, before any model or publish.

`privacy/erasure` removes every person with an erasure request from every layer and snapshot
(tessera/erasure.py) and logs it in privacy.erasure_log. Its blocking check
`no_erased_identifier_remains` hashes every identifier-holding value of every table and every
published file and fails on any that is on the suppression list: nothing is trained or published until it
passes.
"""

import time

import dagster as dg

from orchestration.dbt import dbt_marts_assets, dbt_staging_assets
from orchestration.metadata import run_metadata, table_metadata
from orchestration.resources import DUCKDB_POOL, TesseraResource
from tessera import erasure, pseudonym

ERASURE_KEY = dg.AssetKey(["privacy", "erasure"])
RESIDUE_CHECK = "no_erased_identifier_remains"


@dg.asset(
    key=ERASURE_KEY,
    # after every dbt model, so this run's tables are erased too (dbt rebuilds them clean next run)
    deps=[*dbt_staging_assets.keys, *dbt_marts_assets.keys, dg.AssetKey(["identity", "identity_map"])],
    group_name="privacy",
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
        )
    ],
)
def erasure_asset(context: dg.AssetExecutionContext, tessera: TesseraResource):
    started = time.perf_counter()
    settings = tessera.settings()
    pseudonym.check_salt(settings.pseudonym_salt, settings.mode)
    with tessera.duckdb() as con:
        pseudonym.install(con, settings.pseudonym_salt)
        done = erasure.apply_erasures(con, settings.publish_dir, context.run.run_id)
        residue_started = time.perf_counter()
        # the values apply_erasures hashed before deleting: deletions add no value (erasure.residue)
        found = erasure.residue(con, settings.publish_dir, reuse_listed=True)
        done["seconds"]["residue_check"] = round(time.perf_counter() - residue_started, 2)
        erased_people = con.execute("select count(distinct request_id) from privacy.erasure_log").fetchall()[0][0]
        # what the asset keeps: the audit log (no identifiers in it, so its preview is safe)
        table = table_metadata(con, "privacy.erasure_log")
    removed = sum(done["removed"].values())
    context.log.info(f"erasure: {done['requests']} request(s), {removed} row(s) removed, residue {found or 'none'}")
    yield dg.MaterializeResult(
        metadata={
            **table,
            **run_metadata(started, removed),
            "requests_this_run": done["requests"],
            "requests_ever": erased_people,
            "identifiers_by_kind": dg.MetadataValue.json(done["identifiers"]),
            "rows_removed": dg.MetadataValue.json(done["removed"]),
            "seconds_by_phase": dg.MetadataValue.json(done["seconds"]),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=RESIDUE_CHECK,
                passed=not found,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"places_with_residue": dg.MetadataValue.json(found), "residue": sum(found.values())},
            )
        ],
    )
