"""Decisioning assets: bandit state -> decisions -> rendered messages (docs/decisioning.md).

The published tables built on them (publish/next_best_actions, publish/campaign_outbox) are in
orchestration/publish.py, with the same blocking checks and snapshots as every published table.
"""


import json
import shutil
import time

import dagster as dg

from orchestration.dbt import model_key
from orchestration.metadata import run_metadata, table_metadata
from orchestration.ml import (
    CLUSTERS_KEY,
    PROPENSITY_KEY,
    RECOMMENDER_KEY,
    gated_deps,
    mlflow_run_metadata,
)
from orchestration.resources import DUCKDB_POOL, TesseraResource
from tessera import markdown
from tessera.privacy import pseudonym
from tessera.decisioning.catalogue import CatalogueError, load_catalogue
from tessera.settings import mlflow_artifact_root

DECISIONING_GROUP = "decisioning"
BANDIT_EXPERIMENT = "tessera-bandit"
BANDIT_KEY = dg.AssetKey(["decisioning", "bandit_state"])
DECISIONS_KEY = dg.AssetKey(["decisioning", "decisions"])
MESSAGES_KEY = dg.AssetKey(["decisioning", "rendered_messages"])
OUTBOX_KEY = dg.AssetKey(["publish", "campaign_outbox"])


def catalogue_or_fail():
    try:
        return load_catalogue()
    except CatalogueError as e:
        raise dg.Failure(description=f"the action catalogue is invalid: {e}") from e


def log_bandit_run(settings, version: int, state, exploration: dict[str, float], params: dict, tags: dict) -> str:
    import mlflow

    from ml.tracking import ensure_experiment

    experiment_id = ensure_experiment(settings.mlflow_tracking_uri, BANDIT_EXPERIMENT, mlflow_artifact_root(settings))
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"bandit_state_v{version}", tags=tags) as run:
        mlflow.log_params(params)
        for row in state.itertuples():
            prefix = f"{row.action_id}.{row.variant_id}"
            mlflow.log_metric(f"posterior_mean.{prefix}", row.posterior_mean)
            mlflow.log_metric(f"traffic_share.{prefix}", row.traffic_share)
            mlflow.log_metric(f"trials.{prefix}", row.trials)
            mlflow.log_metric(f"conversions.{prefix}", row.conversions)
        for action_id, share in exploration.items():
            mlflow.log_metric(f"exploration_share.{action_id}", share)
        mlflow.log_dict({"version": version, "state": json.loads(state.to_json(orient="records"))}, "bandit_state.json")
        return run.info.run_id


def state_markdown(state) -> str:
    return markdown.table(
        [(r.action_id, r.variant_id, r.trials, r.conversions, f"{r.posterior_mean:.4f}", f"{r.traffic_share:.3f}") for r in state.itertuples()],
        ["action", "variant", "messages closed", "conversions", "posterior mean", "traffic share"],
        ("left", "left", "right", "right", "right", "right"),
    )


@dg.asset(
    key=BANDIT_KEY,
    deps=[*gated_deps("fct_orders"), model_key("stg_email_events")],
    group_name=DECISIONING_GROUP,
    description=(
        "The content bandit's state: per action and variant, the published messages whose attribution "
        "window has closed, their conversions (a click on the message, or a completed order within the "
        "window) and the Beta posterior. A new version only when the counts change; each version is an "
        "MLflow run (experiment tessera-bandit) with posterior means and exploration share."
    ),
    kinds={"python", "duckdb", "mlflow"},
    owners=["team:data-science"],
    pool=DUCKDB_POOL,
)
def bandit_state(context: dg.AssetExecutionContext, tessera: TesseraResource) -> dg.MaterializeResult:
    from tessera.decisioning import state as bandit_state_store

    started = time.perf_counter()
    settings = tessera.settings()
    catalogue = catalogue_or_fail()
    with tessera.duckdb() as con:
        version, is_new, state, posteriors = bandit_state_store.update_state(con, catalogue, settings.seed)
        exploration = bandit_state_store.exploration(posteriors, state)
        run_id = state["mlflow_run_id"].iloc[0] if len(state) else None
        if is_new or not isinstance(run_id, str):
            run_id = log_bandit_run(
                settings,
                version,
                state,
                exploration,
                params={
                    "version": version,
                    "attribution_window_days": catalogue.attribution_days,
                    "prior": "Beta(1, 1)",
                    "catalogue": str(catalogue.path.name),
                    "seed": settings.seed,
                },
                tags={"dagster_run_id": context.run_id, "source": "tessera"},
            )
            bandit_state_store.record_run(con, version, run_id)
        versions = con.execute("select count(distinct version) from decisioning.bandit_state_versions").fetchall()[0][0]
        table = table_metadata(con, "decisioning.bandit_state_versions")
    return dg.MaterializeResult(
        metadata={
            **table,
            **run_metadata(started, int(state["trials"].sum())),
            **mlflow_run_metadata(settings, run_id),
            "state_version": version,
            "new_version": is_new,
            "versions_kept": int(versions),
            "posteriors": dg.MetadataValue.md(state_markdown(state)),
            "exploration_share": dg.MetadataValue.json({k: round(v, 4) for k, v in exploration.items()}),
            "mlflow_run_id": run_id,
        }
    )


@dg.asset(
    key=DECISIONS_KEY,
    deps=[
        BANDIT_KEY,
        *gated_deps(
            "dim_customers", "customer_rfm", "customer_features", "customer_rule_segments", "customer_consents", "fct_events"
        ),
        PROPENSITY_KEY,
        RECOMMENDER_KEY,
    ],
    group_name=DECISIONING_GROUP,
    description=(
        "Next best actions, internal (customer_key): for each customer and channel the chosen action from "
        "config/actions.yml. Explicit rules win (highest priority first), otherwise the weighted score "
        "of priority, propensity and recommendation affinity; frequency caps, consent and holdout groups "
        "decide whether it is sent; the variant comes from the bandit. Every row says why."
    ),
    kinds={"python", "duckdb"},
    owners=["team:data-science"],
    pool=DUCKDB_POOL,
)
def decisions(context: dg.AssetExecutionContext, tessera: TesseraResource) -> dg.MaterializeResult:
    from tessera.decisioning import decide
    from tessera.decisioning import state as bandit_state_store

    started = time.perf_counter()
    settings = tessera.settings()
    catalogue = catalogue_or_fail()
    with tessera.duckdb() as con:
        pseudonym.install(con, settings.pseudonym_salt)
        con.execute("create schema if not exists decisioning")
        con.execute(bandit_state_store.VERSIONS_DDL)
        version, state = bandit_state_store.current_version(con)
        if version == 0:
            raise dg.Failure(description="no bandit state yet: materialize decisioning/bandit_state first")
        posteriors = bandit_state_store.posteriors_from(state, catalogue)
        shares = decide.decide(con, catalogue, posteriors, version, settings.seed, settings.holdout_share)
        summary = con.execute(
            "select action_id, decision, count(*) from decisioning.decisions group by all order by all"
        ).fetchall()
        unreachable = con.execute(
            "select channel, reason, customers, customers_with_an_eligible_action from decisioning.unreachable "
            "order by channel"
        ).fetchall()
        table = table_metadata(con, "decisioning.decisions", personal=("customer_key",))
    realised = {}
    for action_id, counts in shares.items():
        sent = sum(counts.values())
        if sent and len(counts) > 1:
            best = posteriors[action_id].variants[int(posteriors[action_id].mean.argmax())]
            realised[action_id] = round(1 - counts[best] / sent, 4)
    return dg.MaterializeResult(
        metadata={
            **table,
            **run_metadata(started, table["dagster/row_count"]),
            "bandit_state_version": version,
            "decisions": dg.MetadataValue.md(markdown.table(summary, ["action", "decision", "customers"], ("left", "left", "right"))),
            # no decision is made on a channel the customer cannot be reached on (tessera/decisioning/decide.py)
            "unreachable": dg.MetadataValue.md(
                markdown.table(unreachable, ["channel", "why", "customers", "of whom an action was eligible"], ("left", "left", "right", "right"))
            ),
            "variants_sent": dg.MetadataValue.json(shares),
            "exploration_share_realised": dg.MetadataValue.json(realised),
        }
    )


@dg.asset(
    key=MESSAGES_KEY,
    deps=[DECISIONS_KEY, *gated_deps("dim_customers", "dim_products", "customer_consents"), RECOMMENDER_KEY, CLUSTERS_KEY],
    group_name=DECISIONING_GROUP,
    description=(
        "The messages to send, rendered: subject (plain text) and body (Jinja2, HTML-escaped) of every 'send' decision "
        "into decisioning.messages, with body_ref, the sha256 of the body. "
        "Previews of the first messages of each variant are written as files (metadata: previews)."
    ),
    kinds={"python", "duckdb"},
    owners=["team:data-platform"],
    pool=DUCKDB_POOL,
)
def rendered_messages(context: dg.AssetExecutionContext, tessera: TesseraResource) -> dg.MaterializeResult:
    from tessera.decisioning.render import render_messages

    started = time.perf_counter()
    settings = tessera.settings()
    catalogue = catalogue_or_fail()
    with tessera.duckdb() as con:
        day = con.execute("select max(decided_on) from decisioning.decisions").fetchall()[0][0]
        preview_dir = settings.data_dir / "decisioning" / "previews" / str(day)
        if preview_dir.exists():
            shutil.rmtree(preview_dir)  # this day's previews are rewritten, not added to
        rendered = render_messages(con, catalogue, preview_dir, workers=settings.render_workers)
        # subjects and bodies greet customers by name: masked in the UI's preview
        table = table_metadata(con, "decisioning.messages", personal=("customer_key", "subject", "body"))
    seconds = time.perf_counter() - started
    previews = markdown.table([(a, v, m, p) for a, v, m, _, p in rendered.previews], ["action", "variant", "message", "file"])
    return dg.MaterializeResult(
        metadata={
            **table,
            **run_metadata(started, rendered.messages),
            "messages": rendered.messages,
            "distinct_bodies": rendered.bodies,
            "messages_per_second": round(rendered.messages / seconds, 1) if seconds else 0.0,
            "messages_per_variant": dg.MetadataValue.json(rendered.per_variant),
            "previews": dg.MetadataValue.path(str(preview_dir / "index.html")),
            "preview_files": dg.MetadataValue.md(previews),
        }
    )


decisioning_assets = [bandit_state, decisions, rendered_messages]
