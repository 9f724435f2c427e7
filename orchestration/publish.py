"""Published outputs as Dagster assets: one per table of tessera/publish/published.py, and
publish/release.

Each asset builds its table beside the published one, runs its checks (the SQL validations and the
Great Expectations suite expectations/publish_<name>.json, check gx_publish_<name>) and, only if
every check passes, writes a snapshot version and swaps it in (tessera/publish/outputs.py).
publish/release makes the run's versions current together. A failed check or step leaves the last
good version in place everywhere. Customers who asked for erasure are never published.
"""

import time

import dagster as dg

from orchestration.dbt import model_key
from orchestration.keys import (
    CLUSTERS_KEY,
    DECISIONS_KEY,
    MESSAGES_KEY,
    PRODUCT_LISTS_KEY,
    PROPENSITY_KEY,
    PUBLISH_GROUP,
    RECOMMENDER_KEY,
    RELEASE_KEY,
    SESSION_INDEX_KEY,
    publish_key,
)
from orchestration.metadata import declared_schema, run_metadata, table_metadata
from orchestration.quality import gated_marts_upstream, run_suite, suite_metadata
from orchestration.recovery import run_in_progress
from orchestration.resources import DUCKDB_POOL, TesseraResource
from tessera.privacy import pseudonym
from tessera.publish import outputs
from tessera.publish.outputs import Published
from tessera.publish.published import PUBLISHED
from tessera.quality.suites import record_pass

# what each table reads: the assets that write its inputs and the dbt models it names
_AUDIENCE = ("active_customers", "dim_customers", "customer_consents")
_MODELS = {
    "customer_recommendations": (*_AUDIENCE, "consented_customers", "dim_products"),
    "customer_segments": (*_AUDIENCE, "consented_customers", "customer_rfm", "customer_rule_segments"),
    "customer_scores": ("active_customers", "dim_customers", "customer_rfm"),
    "campaign_uplift": ("fct_orders",),
    "product_recommendations": ("dim_products",),
    "next_best_actions": _AUDIENCE,
    "campaign_outbox": (*_AUDIENCE, "consented_customers"),
}
_ASSETS = {
    "customer_recommendations": (RECOMMENDER_KEY,),
    "customer_segments": (CLUSTERS_KEY,),
    "customer_scores": (PROPENSITY_KEY,),
    "campaign_uplift": (publish_key("customer_segments"),),
    "product_recommendations": (PRODUCT_LISTS_KEY,),
    "next_best_actions": (DECISIONS_KEY,),
    "campaign_outbox": (MESSAGES_KEY, DECISIONS_KEY),
}


def _deps(name: str) -> list[dg.AssetKey]:
    """The table's inputs and the gated marts upstream of its dbt inputs: a failing marts gate
    holds it back. Each table reads a model or a decision (_ASSETS), which comes after the erasure
    step (gated_deps): so does the table, without an edge of its own to privacy/erasure."""
    deps = [*_ASSETS[name], *map(model_key, _MODELS[name])]
    return deps + [k for k in gated_marts_upstream(_MODELS[name]) if k not in deps]


def gx_check_name(spec: Published) -> str:
    return f"gx_publish_{spec.name}"


def check_specs(spec: Published) -> list[dg.AssetCheckSpec]:
    key = publish_key(spec.name)
    return [
        dg.AssetCheckSpec(v.name, asset=key, description=v.description, blocking=True) for v in spec.validations
    ] + [
        dg.AssetCheckSpec(
            gx_check_name(spec),
            asset=key,
            description=f"Great Expectations suite expectations/publish_{spec.name}.json on the candidate table.",
            blocking=True,
        )
    ]


def suite_result(gx_name: str, suite) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=gx_name,
        passed=suite.success,
        severity=dg.AssetCheckSeverity.ERROR,
        description=suite.describe(),
        metadata=suite_metadata(suite),
    )


def refuse(con, spec: Published, candidate: str, results, suite, gx_result: dg.AssetCheckResult):
    """The failed checks' results, then the step's failure: the candidate is dropped and the last
    good version stays."""
    failed = [v.name for v, n in results if n] + ([] if suite.success else [gx_result.check_name])
    yield gx_result
    for v, n in results:
        yield dg.AssetCheckResult(
            check_name=v.name, passed=n == 0, severity=dg.AssetCheckSeverity.ERROR, metadata={"violations": n}
        )
    outputs.drop_candidate(con, candidate)
    raise dg.Failure(
        description=f"publish/{spec.name} not swapped in: checks failed: {', '.join(failed)}; the last good version stays",
    )


def build_publish_asset(spec: Published) -> dg.AssetsDefinition:
    @dg.asset(
        key=publish_key(spec.name),
        deps=_deps(spec.name),
        group_name=PUBLISH_GROUP,
        description=spec.description,
        kinds={"python", "duckdb", "parquet", "great_expectations"},
        # what each column means (tessera/publish/columns.yml), shown before the first run too
        metadata={"dagster/column_schema": declared_schema(f"publish.{spec.name}")},
        owners=["team:data-platform"],
        pool=DUCKDB_POOL,
        check_specs=check_specs(spec),
    )
    def _publish(context: dg.AssetExecutionContext, tessera: TesseraResource):
        started = time.perf_counter()
        settings, run_id, gx_name = tessera.settings(), context.run.run_id, gx_check_name(spec)
        # refuses the public demo salt outside demo mode, before anything is built
        pseudonym.check_salt(settings.pseudonym_salt, settings.mode)
        with tessera.duckdb() as con:
            candidate = outputs.build_candidate(con, spec, settings, context.log)
            results = outputs.run_validations(con, spec, candidate, outputs.parameters(settings))
            # recorded as the row-count baseline only once this version is published
            suite = run_suite(con, settings, gx_name, candidate, f"publish_{spec.name}", run_id, record=False)
            gx_result = suite_result(gx_name, suite)
            if not suite.success or any(n for _, n in results):
                yield from refuse(con, spec, candidate, results, suite, gx_result)
            release_now = not release_in_run(context)
            checks = outputs.check_records(results, gx_name, f"publish_{spec.name}", suite)
            published = outputs.publish_version(
                con, spec, candidate, settings, run_id, checks, context.log, release_now
            )
            record_pass(con, gx_name, f"publish.{spec.name}", published["rows"], run_id)
            table = table_metadata(con, f"publish.{spec.name}")
            # an empty version is published too (it replaces what is no longer true), with why
            empty = outputs.empty_reason(con, spec, published["rows"])
        snap = published["snapshot"]
        yield dg.MaterializeResult(
            metadata={
                **table,
                **({} if empty is None else {"empty_reason": empty}),
                **run_metadata(started, published["rows"]),
                "snapshot_version": snap.version,
                "released": "now" if release_now else "by publish/release, with every other table",
                "exports": dg.MetadataValue.md(outputs.exports_table(snap.manifest)),
            },
            check_results=[
                dg.AssetCheckResult(check_name=v.name, passed=True, metadata={"violations": n}) for v, n in results
            ]
            + [gx_result],
        )

    return _publish


publish_assets = [build_publish_asset(spec) for spec in PUBLISHED]


@dg.asset(
    key=RELEASE_KEY,
    # the session index (orchestration/sessions.py) is staged like the tables above
    deps=[*(a.key for a in publish_assets), SESSION_INDEX_KEY],
    group_name=PUBLISH_GROUP,
    description=(
        "Moves every table this run published from its staging directory into place and replaces "
        "release.json in one step: readers (the API, exports) see the previous complete set or the "
        "new one, never a mix. Removes what no release names (a crashed run's leftovers, expired "
        "versions) and leftover publish.*__next tables. docs/publishing.md."
    ),
    kinds={"python", "parquet"},
    owners=["team:data-platform"],
    pool=DUCKDB_POOL,
)
def release_asset(context: dg.AssetExecutionContext, tessera: TesseraResource):
    started = time.perf_counter()
    settings = tessera.settings()
    done = outputs.release_staged(settings, context.run.run_id, lambda r: run_in_progress(context.instance, r))
    with tessera.duckdb() as con:
        leftovers = outputs.drop_leftover_candidates(con)
    changes, stale_runs = done["changes"], done["stale_runs"]
    context.log.info(
        f"release {done['release']}: {len(changes)} table(s) moved ({', '.join(sorted(changes)) or 'none'}); "
        f"{len(done['removed'])} unnamed version(s), {len(stale_runs)} stale staging dir(s), "
        f"{len(leftovers)} leftover candidate table(s) removed"
    )
    return dg.MaterializeResult(
        metadata={
            **run_metadata(started, len(changes)),
            "release": done["release"],
            "current": dg.MetadataValue.json(done["current"]),
            "versions_removed": len(done["removed"]),
            "stale_staging_removed": len(stale_runs),
            "leftover_candidates_dropped": dg.MetadataValue.json(leftovers),
        }
    )


def release_in_run(context: dg.AssetExecutionContext) -> bool:
    """Whether publish/release runs after this step: it is in the job and in the run's selection."""
    selection = context.run.asset_selection
    in_job = RELEASE_KEY in context.job_def.asset_layer.selected_asset_keys
    return in_job and (selection is None or RELEASE_KEY in selection)
