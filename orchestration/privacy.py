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
from orchestration.metadata import run_metadata, table_metadata
from orchestration.resources import DUCKDB_POOL, TesseraResource
from tessera.privacy import byte_residue, erasure, pseudonym
from tessera.publish import snapshots
from ml.forget import forget
from tessera.decisioning.render import erase_previews
from tessera.settings import Settings, mlflow_artifact_root

ERASURE_KEY = dg.AssetKey(["privacy", "erasure"])
RESIDUE_CHECK = "no_erased_identifier_remains"
BYTES_CHECK = "no_erased_bytes_remain"


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
    settings = tessera.settings()
    pseudonym.check_salt(settings.pseudonym_salt, settings.mode)
    stale = snapshots.sweep_staging(
        settings.publish_dir, lambda r: r != context.run.run_id and run_in_progress(context.instance, r)
    )
    with tessera.duckdb() as con:
        pseudonym.install(con, settings.pseudonym_salt)
        done = erasure.apply_erasures(con, settings.publish_dir, context.run.run_id, file_steps=file_steps(settings))
        residue_started = time.perf_counter()
        # the values apply_erasures hashed before deleting: deletions add no value (erasure.residue)
        found = erasure.residue(con, settings.publish_dir, reuse_listed=True)
        done["seconds"]["residue_check"] = round(time.perf_counter() - residue_started, 2)
        erased_people = con.execute("select count(distinct request_id) from privacy.erasure_log").fetchall()[0][0]
        owed = con.execute("select count(*) from privacy.maintenance where task = 'compact'").fetchall()[0][0]
    compaction = None
    if owed:  # after the connection closed: nothing else holds the file (the duckdb pool)
        compaction = byte_residue.compact(settings.duckdb_path, settings.duckdb_config())
        with tessera.duckdb() as con:
            con.execute("delete from privacy.maintenance where task = 'compact'")
            con.execute("checkpoint")
    proof = None
    if done["values"]:
        roots, excluded = scan_places(settings, Path(context.instance.root_directory))
        proof = byte_residue.scan(roots, done["values"], excluded)
    with tessera.duckdb(read_only=True) as con:
        # what the asset keeps: the audit log (no identifiers in it, so its preview is safe)
        table = table_metadata(con, "privacy.erasure_log")
    removed = sum(done["removed"].values())
    context.log.info(
        f"erasure: {done['requests']} new request(s), {done['completed']} completed, {removed} row(s) removed, "
        f"residue {found or 'none'}"
        + (f", warehouse compacted {compaction.bytes_before} -> {compaction.bytes_after} bytes" if compaction else "")
        + (f", {proof.files} file(s) scanned byte by byte, hits in {len(proof.hits)}" if proof else "")
        + (f"; removed the staging of {len(stale)} finished run(s)" if stale else "")
    )
    yield dg.MaterializeResult(
        metadata={
            **table,
            **run_metadata(started, removed),
            "requests_this_run": done["requests"],
            "requests_completed": done["completed"],
            "requests_ever": erased_people,
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
            bytes_check(proof),
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
        ),
        metadata={
            "files_scanned": proof.files,
            "bytes_scanned": proof.bytes,
            "roots": dg.MetadataValue.json(proof.roots),
            "not_scanned": dg.MetadataValue.json(proof.skipped),
            "files_with_residue": dg.MetadataValue.json(proof.hits),
        },
    )


def scan_places(settings: Settings, dagster_home: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """(roots, excluded) of the bytes proof. Excluded: the landing folder, which is what the shop
    delivered (tessera never rewrites a delivery; the suppression list erases a re-delivered
    record, and docs/privacy.md asks the shop to delete it from its exports), and the generated
    ground truth of demo data."""
    roots = {"data": settings.data_dir, "dagster_home": dagster_home}
    if not settings.duckdb_path.resolve().is_relative_to(settings.data_dir.resolve()):
        roots["warehouse"] = settings.duckdb_path.parent
    if not settings.publish_dir.resolve().is_relative_to(settings.data_dir.resolve()):
        roots["publish"] = settings.publish_dir
    excluded = {
        "landing folder (the shop's delivery)": settings.landing_dir,
        "generated ground truth (demo data)": settings.truth_dir,
    }
    return roots, excluded


def file_steps(settings: Settings) -> dict:
    """What else tessera wrote that may hold an erased person, each given the erased values: the
    rendered message previews of every day, and MLflow (runs, logged models and registered
    versions trained on the person are retired: docs/privacy.md)."""
    return {
        "previews": lambda values: erase_previews(settings.data_dir / "decisioning" / "previews", values),
        "mlflow": lambda values: forget(
            values, settings.mlflow_tracking_uri, settings.mlflow_model_name, mlflow_artifact_root(settings)
        ),
    }


def run_in_progress(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether a run (e.g. the owner of a publish staging directory) may still be writing."""
    record = instance.get_run_record_by_id(run_id)
    return record is not None and not record.dagster_run.is_finished
