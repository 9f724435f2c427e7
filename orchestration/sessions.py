"""publish/session_index: the recent web sessions' products, anonymous sessions included, published
as a snapshot for the serving API's session recommendations. How it is built and checked is in
tessera/publish/sessions.py; the models are ml/sessions.py."""

import time

import dagster as dg

from orchestration.keys import PUBLISH_GROUP, SESSION_INDEX_KEY
from orchestration.metadata import declared_schema, run_metadata, table_metadata
from orchestration.publish import check_specs, gx_check_name, refuse, release_in_run, suite_result
from orchestration.quality import gated_deps, run_suite
from orchestration.resources import DUCKDB_POOL, TesseraResource
from tessera.publish import outputs, sessions
from tessera.quality.suites import record_pass


class SessionIndexConfig(dg.Config):
    # sessions starting within this many days of the latest event
    lookback_days: int = sessions.DEFAULT_LOOKBACK_DAYS
    # at most this many of the most recent sessions (the served model holds them in memory)
    max_sessions: int = sessions.DEFAULT_MAX_SESSIONS


@dg.asset(
    key=SESSION_INDEX_KEY,
    deps=gated_deps("fct_events", "dim_products"),
    group_name=PUBLISH_GROUP,
    description=sessions.SESSION_INDEX.description,
    kinds={"python", "duckdb", "parquet", "great_expectations"},
    metadata={"dagster/column_schema": declared_schema(f"publish.{sessions.SESSION_INDEX.name}")},
    owners=["team:data-science"],
    pool=DUCKDB_POOL,
    check_specs=check_specs(sessions.SESSION_INDEX),
)
def session_index(context: dg.AssetExecutionContext, tessera: TesseraResource, config: SessionIndexConfig):
    """Built, checked (the SQL validations and the Great Expectations suite, all blocking) and
    published as the customer tables are (orchestration/publish.py), from its own SQL."""
    started, settings, run_id = time.perf_counter(), tessera.settings(), context.run.run_id
    spec = sessions.SESSION_INDEX
    gx_name = gx_check_name(spec)
    with tessera.duckdb() as con:
        candidate = sessions.build_candidate(con, config.lookback_days, config.max_sessions)
        results = outputs.run_validations(con, spec, candidate)
        suite = run_suite(con, settings, gx_name, candidate, f"publish_{spec.name}", run_id, record=False)
        gx_result = suite_result(gx_name, suite)
        if not suite.success or any(n for _, n in results):
            yield from refuse(con, spec, candidate, results, suite, gx_result)
        # how the served model fares on the index's own latest sessions, for the UI
        quality = sessions.holdout_quality(con, candidate)
        release_now = not release_in_run(context)
        checks = outputs.check_records(results, gx_name, f"publish_{spec.name}", suite)
        published = outputs.publish_version(con, spec, candidate, settings, run_id, checks, context.log, release_now)
        record_pass(con, gx_name, f"publish.{spec.name}", published["rows"], run_id)
        table = table_metadata(con, f"publish.{spec.name}")
        (n_sessions,) = con.execute(f"select count(distinct session_number) from publish.{spec.name}").fetchone()
    snap = published["snapshot"]
    yield dg.MaterializeResult(
        metadata={
            **table,
            **({} if published["rows"] else {"empty_reason": spec.empty_when}),
            **run_metadata(started, published["rows"]),
            "sessions": n_sessions,
            "snapshot_version": snap.version,
            "released": "now" if release_now else "by publish/release, with every other table",
            **{f"holdout_{k}": dg.MetadataValue.float(float(v)) for k, v in quality.items()},
        },
        check_results=[
            dg.AssetCheckResult(check_name=v.name, passed=True, metadata={"violations": n}) for v, n in results
        ]
        + [gx_result],
    )
