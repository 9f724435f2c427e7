"""Right to erasure as an asset: after the customer view is built, before any model or publish.

`privacy/erasure` removes every person with an erasure request from every layer and snapshot
(tessera/privacy/erasure.py) and logs it in privacy.erasure_log. Its blocking check
`no_erased_identifier_remains` hashes every identifier-holding value of every table and every
published file and fails on any that is on the suppression list: nothing is trained or published until it
passes.
"""

import functools
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import dagster as dg
import duckdb

from orchestration.dbt import GATED_MARTS, dbt_marts_assets, dbt_relations, dbt_staging_assets, model_key
from orchestration.identity import identity_map
from orchestration.keys import ERASURE_KEY, PRIVACY_GROUP, PYTHON_TABLES, publish_key
from orchestration.metadata import PERSONAL_COLUMN_NAMES, run_metadata, shown_row_count, table_metadata
from orchestration.recovery import run_in_progress
from orchestration.resources import DUCKDB_POOL, TesseraResource
from orchestration.sources import load_tables, source_assets
from tessera.privacy import byte_residue
from tessera.privacy.erasure_run import run_erasure
from tessera.publish.published import PUBLISHED
from tessera.publish.sessions import SESSION_INDEX
from tessera.sql import ident

RESIDUE_CHECK = "no_erased_identifier_remains"
ERASURE_STEP = ERASURE_KEY.to_user_string()
BYTES_CHECK = "no_erased_bytes_remain"


def built_last(specs: Iterable[dg.AssetSpec]) -> list[dg.AssetKey]:
    """Of these assets, those none of the others reads: the ends of their lineage. A run that
    builds any of them has built it before these ends, so an asset after the ends is after all."""
    specs = list(specs)
    keys = {s.key for s in specs}
    read = {d.asset_key for s in specs for d in s.deps}
    return sorted(keys - read, key=lambda k: k.to_user_string())


# The erasure acts on every table the customer view builds (dbt's two halves and the identity map
# between them): it runs after the ends of their lineage, not beside each of them, so the lineage
# reads left to right. It also waits for the gated marts, as before: a failing marts gate holds
# it back with everything after the customer view. The models, decisions and published tables
# come after it (orchestration/quality.py gated_deps; tests/test_definitions.py).
ERASURE_DEPS = sorted(
    {
        *built_last([*dbt_staging_assets.specs, *dbt_marts_assets.specs, *identity_map.specs]),
        *(model_key(m) for m in GATED_MARTS),
    },
    key=lambda k: k.to_user_string(),
)


@dg.asset(
    key=ERASURE_KEY,
    # after every dbt model, so this run's tables are erased too (dbt rebuilds them clean next run)
    deps=ERASURE_DEPS,
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
    changed: list[dg.AssetMaterialization | dg.AssetObservation] = []
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
        if any(outcome.done["removed"].values()):
            changed = table_changes(con, outcome.done["removed"], lambda k: shown_row_count(context.instance, k))
    context.log.info(outcome.summary())
    # the tables of other assets this step changed, with their true row counts (the UI shows
    # an asset's row count from its latest materialization)
    for event in changed:
        context.log_event(event)
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
            + "".join(
                f" Not residue, in {name}: "
                + ", ".join(
                    f"{n} in {place}'s compressed bytes, whose values hold none" for place, n in sorted(c.items())
                )
                + "."
                for name, c in sorted(proof.coincidences.items())
            )
        ),
        metadata={
            "files_scanned": proof.files,
            "bytes_scanned": proof.bytes,
            "roots": dg.MetadataValue.json(proof.roots),
            "not_scanned": dg.MetadataValue.json(proof.skipped),
            "files_with_residue": dg.MetadataValue.json(proof.hits),
            "residue_places_in_duckdb_files": dg.MetadataValue.json(proof.places),
            "coincidences_in_compressed_columns": dg.MetadataValue.json(proof.coincidences),
        },
    )


@functools.cache
def table_owners() -> dict[str, tuple[dg.AssetKey, frozenset[str]]]:
    """Each warehouse table or view an asset owns (schema.name): the asset, and the columns its
    preview masks besides those tessera/privacy/personal.py calls personal."""
    named_after_key = [
        *(a.key for a in source_assets),
        *(spec.key for spec in load_tables),
        *(publish_key(p.name) for p in (*PUBLISHED, SESSION_INDEX)),
    ]
    owners = {".".join(k.path): (k, PERSONAL_COLUMN_NAMES) for k in named_after_key}
    owners |= {table: (k, PERSONAL_COLUMN_NAMES) for k, table in PYTHON_TABLES.items()}
    for uid, (relation, personal) in dbt_relations().items():
        owners[relation] = (model_key(uid.split(".")[-1]), personal)
    return owners


def table_changes(
    con: duckdb.DuckDBPyConnection, removed: Mapping[str, int], shown: Callable[[dg.AssetKey], int | None]
) -> list[dg.AssetMaterialization | dg.AssetObservation]:
    """A materialization (an observation, for a side table) of each other asset whose table the
    erasure changed, with its row count, schema and preview as they are now: the tables it
    removed rows from (`removed`, rows per schema.table), raw.erased_rows where it recorded
    their positions, and the views whose count is no longer the one the UI shows (`shown`)."""
    owners = table_owners()
    changed = {t: n for t, n in removed.items() if n and t in owners and owners[t][0] != ERASURE_KEY}
    raw_rows = sum(n for t, n in changed.items() if t.startswith("raw."))
    if raw_rows:  # their positions (tessera/privacy/erasure.py erase_raw)
        changed["raw.erased_rows"] = raw_rows
    if not changed:
        return []
    views = {
        f"{schema}.{name}": ident(schema, name)
        for schema, name in con.execute(
            "select table_schema, table_name from information_schema.tables where table_type = 'VIEW'"
        ).fetchall()
    }
    stale_views = []
    for view in sorted(views.keys() & owners.keys() - changed.keys()):
        before = shown(owners[view][0])
        [(now,)] = con.execute(f"select count(*) from {views[view]}").fetchall()
        if before is not None and before != now:
            stale_views.append(view)
    side_tables = {spec.key for spec in load_tables}
    events = []
    for table in [*sorted(changed), *stale_views]:
        key, personal = owners[table]
        # a table no step of its own builds (raw.erased_rows, raw.load_rejects) is observed: the
        # UI shows an observation's row count while the asset has no materialization
        event = dg.AssetObservation if key in side_tables else dg.AssetMaterialization
        events.append(
            event(
                asset_key=key,
                description=f"Changed by {ERASURE_STEP}: {_what_changed(table, changed)}",
                metadata={
                    **table_metadata(con, table, personal),
                    "rows_processed": dg.MetadataValue.int(changed.get(table, 0)),
                    "changed_by": ERASURE_STEP,
                },
            )
        )
    return events


def _what_changed(table: str, changed: Mapping[str, int]) -> str:
    if table == "raw.erased_rows":
        return "the positions of the raw rows and rejected lines it removed."
    if table in changed:
        return f"{changed[table]} row(s) of people with an erasure request removed."
    return "a view over the tables it changed, counted again."
