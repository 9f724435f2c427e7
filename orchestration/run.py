"""Materialize the asset graph in-process and print a summary a person can read."""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from orchestration.keys import DECISIONS_KEY, EVALUATION_KEY, IDENTITY_MAP_KEY, PROPENSITY_KEY, publish_key
from orchestration.launch import execute_in_process, provenance_tags, workspace_job
from orchestration.progress import DBT_LOG_ENV, KEEP_LOGS, Progress, dbt_log_path, failure_text, log_path, prune_logs
from orchestration.recovery import recover_abandoned_runs, run_tags
from tessera.db import connect, table_exists
from tessera.landing.contract import SOURCES
from tessera.settings import Settings, load_settings, preflight
from tessera.sql import ident

LAYERS = ("raw", "reference", "staging", "intermediate", "marts", "quarantine", "ml", "publish")


def _read_only(settings: Settings):
    """The summary reads after the run; another run may hold the file meanwhile: wait for it."""
    return connect(
        settings.duckdb_path,
        read_only=True,
        wait_seconds=settings.duckdb_lock_wait_seconds,
        log=lambda message: print(message, file=sys.stderr),
    )


def _rows_if_table(settings: Settings, schema: str, table: str, sql: str) -> list[tuple] | None:
    """The query's rows, or None while the database or `schema.table` does not exist yet."""
    if not settings.duckdb_path.exists():
        return None
    con = _read_only(settings)
    try:
        if not table_exists(con, schema, table):
            return None
        return con.execute(sql).fetchall()
    finally:
        con.close()


def layer_row_counts(settings: Settings) -> dict[str, dict[str, int | None]]:
    """Rows of every table per layer; a view is listed with None. Counting a view runs its query,
    which on a large shop costs more than the summary is worth (docs/scaling.md)."""
    if not settings.duckdb_path.exists():
        return {}
    con = _read_only(settings)
    try:
        tables = con.execute(
            "select table_schema, table_name, table_type = 'VIEW' from information_schema.tables "
            "where table_schema in (select unnest(?)) order by 1, 2",
            [list(LAYERS)],
        ).fetchall()
        out: dict[str, dict[str, int | None]] = {}
        for schema, table, is_view in tables:
            count = None if is_view else con.execute(f"select count(*) from {ident(schema, table)}").fetchone()[0]
            out.setdefault(schema, {})[table] = count
        return out
    finally:
        con.close()


def latest_model_run(settings: Settings) -> tuple[str | None, dict[str, float]]:
    """The MLflow run of the published recommendations and its metrics."""
    rows = _rows_if_table(
        settings,
        "publish",
        "customer_recommendations",
        "select min(model_run_id) from publish.customer_recommendations",
    )
    row = rows[0] if rows else None
    if not row or not row[0]:
        return None, {}
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return row[0], dict(mlflow.tracking.MlflowClient().get_run(row[0]).data.metrics)


def quarantine_summary(settings: Settings) -> list[str]:
    """Per source: landing records, quarantined, and whether they reconcile (nothing lost)."""
    rows = _rows_if_table(
        settings,
        "quarantine",
        "source_reconciliation",
        "select source, landing_records, quarantined_records, quarantine_rate, reconciles "
        "from quarantine.source_reconciliation order by source",
    )
    if rows is None:
        return []
    ok = sum(1 for r in rows if r[4])
    lines = [
        f"reconciliation: {ok}/{len(rows)} sources reconcile (landing = loaded + quarantined = passed on + quarantined)"
    ]
    lines += [
        f"  {s:<17} {n:>9,} records, {q:>6,} quarantined ({rate:.2%}){'' if good else '  DOES NOT RECONCILE'}"
        for s, n, q, rate, good in rows
    ]
    lines.append("  every quarantined record, with reason and raw content: quarantine.quarantined_records")
    return lines


def revenue_summary(settings: Settings) -> list[str]:
    """Revenue in the base currency: sold, returned, net, and the lines that are not customer
    sales (fct_orders, docs/landing_contract.md "Returns")."""
    rows = _rows_if_table(
        settings,
        "marts",
        "fct_orders",
        "select coalesce(sum(gross_sales_base), 0), coalesce(sum(returned_base), 0), "
        "coalesce(sum(net_revenue_base), 0), coalesce(sum(other_base), 0), "
        "count(*) filter (where status = 'returned'), count(*) filter (where status = 'non_sale') "
        "from marts.fct_orders",
    )
    if rows is None:
        return []
    gross, returned, net, other, returns, non_sale = rows[0]
    share = float(returned) / float(gross) if gross else 0.0
    return [
        f"revenue: {gross:,.2f} sold, {returned:,.2f} returned ({share:.1%}), {net:,.2f} net; "
        f"{other:,.2f} in lines that are not sales (postage, fees, vouchers, adjustments); "
        f"{returns:,} return documents, {non_sale:,} documents without a sale"
    ]


def identity_summary(settings: Settings) -> list[str]:
    if not settings.duckdb_path.exists():
        return []
    con = _read_only(settings)
    try:
        tables = {
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where table_schema = 'identity'"
            ).fetchall()
        }
        lines = []
        if "resolution_runs" in tables:
            row = con.execute(
                "select records, clusters, merge_rate, deterministic_links, fuzzy_links, refused_links, id_changes "
                "from identity.resolution_runs order by run_at desc limit 1"
            ).fetchall()
            if row:
                r = row[0]
                lines.append(
                    f"identity: {r[0]:,} person records -> {r[1]:,} customers (merge rate {r[2]:.3f}); "
                    f"links: {r[3]:,} deterministic, {r[4]:,} fuzzy, {r[5]:,} refused; id changes vs previous run: {r[6]:,}"
                )
        if "evaluation_history" in tables:
            row = con.execute(
                "select metrics from identity.evaluation_history order by evaluated_at desc limit 1"
            ).fetchall()
            if row:
                import json

                m = json.loads(row[0][0])
                lines.append(
                    f"identity vs ground truth: pairwise precision {m['pairwise_precision']:.4f}, "
                    f"recall {m['pairwise_recall']:.4f}, F1 {m['pairwise_f1']:.4f}"
                )
        return lines
    finally:
        con.close()


def propensity_summary(settings: Settings) -> list[str]:
    rows = _rows_if_table(
        settings,
        "ml",
        "propensity_scores",
        "select min(purchase_propensity_30d_run_id), min(churn_risk_30d_run_id) from ml.propensity_scores",
    )
    if not rows:
        return []
    runs = rows[0]
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.tracking.MlflowClient()
    lines = []
    for label, run_id in zip(("purchase in 30 days", "churn in 30 days"), runs, strict=False):
        if run_id:
            m = client.get_run(run_id).data.metrics
            lines.append(
                f"propensity ({label}), MLflow run {run_id}: AUC {m['auc']:.4f} vs recency-only {m['baseline_recency_auc']:.4f}, "
                f"PR-AUC {m['pr_auc']:.4f}, Brier {m['brier']:.4f}"
            )
    return lines


def decisioning_summary(settings: Settings) -> list[str]:
    """Next best actions by decision, the bandit's state version and where the previews are."""
    rows = _rows_if_table(
        settings,
        "decisioning",
        "decisions",
        "select decision, count(*), max(decided_on), max(bandit_state_version) from decisioning.decisions "
        "group by decision order by decision",
    )
    if not rows:
        return []
    day, version = max(r[2] for r in rows), max(r[3] for r in rows)
    counts = ", ".join(f"{decision} {n:,}" for decision, n, _, _ in rows)
    lines = [f"next best actions for {day} (customer x channel): {counts}; bandit state v{version}"]
    index = settings.data_dir / "decisioning" / "previews" / str(day) / "index.html"
    if index.exists():
        lines.append(f"  rendered message previews: {index}")
    from tessera.decisioning.report import summary_line

    report = summary_line(settings)
    if report:
        lines.append(f"  {report}")
    return lines


def _reasons(result: dg.ExecutionResult, name: str) -> list[tuple[str, str]]:
    """(asset, reason) of each asset materialized this run with the metadata entry `name`."""
    out = []
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        reason = materialization.metadata.get(name)
        if reason is not None:
            out.append((materialization.asset_key.to_user_string(), str(getattr(reason, "value", reason))))
    return out


def skipped_models(result: dg.ExecutionResult) -> list[tuple[str, str]]:
    """(asset, reason) of each asset that materialized without its model this run (thin data:
    its `skipped_reason` metadata, orchestration/ml.py); what does not need the model still publishes."""
    return _reasons(result, "skipped_reason")


def empty_outputs(result: dg.ExecutionResult) -> list[tuple[str, str]]:
    """(asset, reason) of each published table whose new version holds no row (its `empty_reason`
    metadata, orchestration/publish.py): published all the same, with why it is empty."""
    return _reasons(result, "empty_reason")


def full_refresh_config(job: dg.JobDefinition) -> dict:
    """Run config setting `full_refresh: true` on every step of the job that takes it (the
    loaders and both dbt steps)."""
    ops = {}
    for node in job.graph.node_dict.values():
        schema = node.definition.config_schema
        fields = getattr(schema.config_type, "fields", None) if schema is not None else None
        if fields and "full_refresh" in fields:
            ops[node.name] = {"config": {"full_refresh": True}}
    return {"ops": ops}


# the asset each section of the summary reads: a section whose asset this run did not materialize
# is marked as an earlier run's (after a failure, or in a job that does not build it)
RECONCILIATION_KEY = dg.AssetKey(["quarantine", "source_reconciliation"])
REVENUE_KEY = dg.AssetKey(["marts", "fct_orders"])
RECOMMENDATIONS_KEY = publish_key("customer_recommendations")
# the webserver `make ui` starts: where a run's page is
DAGSTER_UI = "http://127.0.0.1:3000"


def number(value: float) -> str:
    """A metric as the summary prints it: a count as an integer (1,991, not 1991.0), else 4 decimals."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:.4f}"


@dataclass
class Freshness:
    """Which assets this run materialized, and when the others last were (the instance's history)."""

    materialized: set[dg.AssetKey]
    instance: dg.DagsterInstance

    def note(self, key: dg.AssetKey) -> str:
        """An empty string for an asset of this run, else a mark saying when it was last materialized."""
        if key in self.materialized:
            return ""
        event = self.instance.get_latest_materialization_event(key)
        when = (
            f"as of {datetime.fromtimestamp(event.timestamp, UTC):%Y-%m-%d %H:%M} UTC"
            if event is not None
            else "from an earlier run"
        )
        return f" [STALE: not rebuilt by this run; {when}]"

    def mark(self, lines: list[str], key: dg.AssetKey) -> list[str]:
        """`lines` with the first one marked when `key` was not materialized by this run."""
        return [lines[0] + self.note(key), *lines[1:]] if lines else lines


@dataclass(frozen=True)
class Plan:
    """The steps a run was to execute, in plan order, and the assets and checks of each."""

    steps: list[str]
    assets: set[dg.AssetKey]
    checks: dict[str, list]

    @staticmethod
    def of(instance: dg.DagsterInstance, run: dg.DagsterRun) -> Plan:
        snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        steps = [s for s in snapshot.steps if s.key in snapshot.step_keys_to_execute]
        properties = {s.key: [o.properties for o in s.outputs if o.properties is not None] for s in steps}
        return Plan(
            steps=[s.key for s in steps],
            assets={p.asset_key for ps in properties.values() for p in ps if p.asset_key is not None},
            checks={
                k: [p.asset_check_key for p in ps if p.asset_check_key is not None] for k, ps in properties.items()
            },
        )


def not_run_steps(result: dg.ExecutionResult, steps: list[str]) -> list[str]:
    """The steps of the run's plan that never started (downstream of a failure), each once."""
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    return [s for s in steps if s not in started]


def outcome_lines(result: dg.ExecutionResult, not_run: list[str]) -> list[str]:
    """The summary's first lines: the outcome and, after a failure, its cause (each failed step's
    own words, a gate's names the expectation, the file and the rows) and what was not run."""
    if result.success:
        return [f"SUCCESS: tessera run {result.run_id}"]
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    lines = [f"FAILED: tessera run {result.run_id}"]
    for event in failures:
        text = failure_text(event).splitlines()
        lines.append(f"cause: step {event.step_key}: {text[0] if text else ''}")
        lines += [f"  {line}" for line in text[1:]]
    if not failures:
        run_failure = next((e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE"), None)
        lines.append(f"cause: {run_failure.message if run_failure is not None else 'the run did not finish'}")
    if not_run:
        lines.append(f"not run ({len(not_run)} steps downstream of the failure): {', '.join(not_run)}")
    return lines


def print_summary(settings: Settings, result: dg.ExecutionResult, instance: dg.DagsterInstance, log_file: Path) -> None:
    """The outcome and its cause first, then the warehouse, the checks, the models and the published
    outputs, each section read after the run and marked when this run did not rebuild it."""
    plan = Plan.of(instance, result.dagster_run)
    fresh = Freshness({e.asset_key for e in result.get_asset_materialization_events()}, instance)
    not_run = not_run_steps(result, plan.steps)
    print()
    print("=" * 78)
    for line in outcome_lines(result, not_run):
        print(line)
    dbt_log = dbt_log_path(settings.data_dir, result.run_id)
    dbt = f"dbt's: {dbt_log}; " if dbt_log.exists() else ""
    print(
        f"Dagster's log of this run: {log_file}; {dbt}the run in the UI (`make ui`): {DAGSTER_UI}/runs/{result.run_id}"
    )
    print("=" * 78)
    evaluations = result.get_asset_check_evaluations()
    passed = [e for e in evaluations if e.passed]
    failed = [e for e in evaluations if not e.passed]
    unevaluated = sum(len(plan.checks[step]) for step in not_run)
    print(
        f"checks: {len(passed)} passed, {len(failed)} failed"
        + (f", {unevaluated} not run (downstream of the failure)" if unevaluated else "")
    )
    for e in failed:
        print(f"  FAILED {e.asset_key.to_user_string()} :: {e.check_name} {e.description or ''}")
    counts = layer_row_counts(settings)
    stale = {
        f"{schema}.{table}"
        for schema, tables in counts.items()
        for table in tables
        if dg.AssetKey([schema, table]) in plan.assets - fresh.materialized
    }
    print(
        f"DuckDB: {settings.duckdb_path}"
        + (f" (* = not rebuilt by this run: an earlier run's rows; {len(stale)} tables)" if stale else "")
    )
    for schema, tables in counts.items():
        cells = [
            (f"{t}={n:,}" if n is not None else f"{t} (view)") + ("*" if f"{schema}.{t}" in stale else "")
            for t, n in tables.items()
        ]
        print(f"  {schema:<13} " + ", ".join(cells))
    empty_sources = [s.name for s in SOURCES if counts.get("raw", {}).get(s.name) == 0]
    if empty_sources:
        print(
            f"landing sources without a row: {', '.join(empty_sources)}; what needs them is published without "
            'them (docs/landing_contract.md, "Partial shops")'
        )
    for asset, reason in skipped_models(result):
        print(f"model skipped, its asset written without it: {asset}: {reason}")
    for asset, reason in _reasons(result, "refresh_reason"):  # retrained, or scored with the champion
        print(f"{asset}: {reason}")
    empty: dict[str, list[str]] = {}
    for asset, reason in empty_outputs(result):
        empty.setdefault(reason, []).append(asset)
    for reason, assets in empty.items():
        print(f"published empty: {', '.join(assets)}: {reason}")
    identity = identity_summary(settings)
    sections = (
        fresh.mark(quarantine_summary(settings), RECONCILIATION_KEY)
        + fresh.mark(revenue_summary(settings), REVENUE_KEY)
        + fresh.mark(identity[:1], IDENTITY_MAP_KEY)
        + fresh.mark(identity[1:], EVALUATION_KEY)
        + fresh.mark(propensity_summary(settings), PROPENSITY_KEY)
        + fresh.mark(decisioning_summary(settings), DECISIONS_KEY)
    )
    for line in sections:
        print(line)
    run_id, metrics = latest_model_run(settings)
    if run_id:
        print(
            f"MLflow run {run_id} ({settings.mlflow_tracking_uri}, experiment '{settings.mlflow_experiment}')"
            + fresh.note(RECOMMENDATIONS_KEY)
        )
        secondary = ("warm_all_", "cold_users_", "cold_items_")  # every slice is in MLflow
        for name in sorted(m for m in metrics if not m.startswith(secondary)):
            print(f"  {name:<40} {number(metrics[name])}")
    published_now = {k for k in fresh.materialized if k.path[0] == "publish"}
    print(
        f"published outputs: DuckDB schema 'publish' and versioned snapshots in {settings.publish_dir}"
        + ("" if published_now or result.success else " [the last good versions: this run published none]")
    )
    from tessera.publish import snapshots

    # current_version, not a look for per-table pointer files: releases name every table's version
    # in one file (tessera/publish/snapshots.py)
    published = (p.name for p in settings.publish_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    for name in sorted(n for n in published if snapshots.current_version(settings.publish_dir, n)):
        snap = snapshots.current_snapshot(settings.publish_dir, name)
        exports = sum(1 for f in snap.manifest["files"] if f["format"] != "parquet")
        print(f"  {name:<26} {int(snap.manifest['rows']):>8,} rows, {exports} export file(s): {snap.path}")
    print("serving API over the current snapshots: `make serve` (http://127.0.0.1:8000/docs)")
    print(f"UIs: `make ui`, then Dagster {DAGSTER_UI} and MLflow http://127.0.0.1:5000")


@contextlib.contextmanager
def _environ(name: str, value: str):
    """os.environ[name] = value for the block (the run's step processes inherit it), as before after."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def console_log_level(verbose: bool) -> str:
    """Dagster's console log: TESSERA_LOG_LEVEL when set, INFO with --verbose, else only what
    Dagster logs as CRITICAL (nothing in a normal run): the progress lines stand in for it."""
    return os.environ.get("TESSERA_LOG_LEVEL") or ("INFO" if verbose else "CRITICAL")


def run_pipeline(job_name: str = "tessera_all", full_refresh: bool = False, verbose: bool = False) -> int:
    # the configuration first, before loading the definitions or touching any data: every
    # problem at once, instead of the first one at the step that needs it
    try:
        settings = load_settings()
        preflight(settings)
    except ValueError as exc:  # ConfigurationError, or an environment variable load_settings refused
        print(f"tessera run: {exc}", file=sys.stderr)
        return 2
    job = workspace_job(job_name)
    jobs = [name for name in job.job.repository.get_definition().job_names if not name.startswith("__")]
    if job_name not in jobs:
        print(f"tessera run: no job {job_name!r}; the jobs: {', '.join(sorted(jobs))}", file=sys.stderr)
        return 2
    definition = job.definition()
    settings.ensure_dirs()
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    # a run killed earlier (SIGKILL, OOM) may still hold the duckdb pool slot: free it first
    recover_abandoned_runs(instance, log=lambda message: print(message, file=sys.stderr))
    run_id = str(uuid.uuid4())  # known before the run starts, so its tags can name it
    log_file = log_path(settings.data_dir, run_id)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    prune_logs(log_file.parent, keep=KEEP_LOGS - 1)
    dbt_log = dbt_log_path(settings.data_dir, run_id)
    print(
        f"tessera run {run_id}: job {job_name} on {settings.data_dir}; Dagster's log: {log_file}, dbt's: {dbt_log}",
        flush=True,
    )
    with log_file.open("w", encoding="utf-8") as log, _environ(DBT_LOG_ENV, str(dbt_log)):
        instance.add_event_listener(run_id, Progress(log))
        result = execute_in_process(
            instance,
            job,
            run_id,
            run_config={
                "loggers": {"console": {"config": {"log_level": console_log_level(verbose)}}},
                **(full_refresh_config(definition) if full_refresh else {}),
            },
            tags={**run_tags(run_id), **provenance_tags(settings)},
        )
    print_summary(settings, result, instance, log_file)
    return 0 if result.success else 1
