"""Decisioning assets: bandit state -> decisions -> rendered messages (docs/decisioning.md).

The published tables built on them (publish/next_best_actions, publish/campaign_outbox) are in
orchestration/publish.py, with the same blocking checks and snapshots as every published table.
"""

import time

import dagster as dg

from orchestration.dbt import model_key
from orchestration.keys import (
    BANDIT_KEY,
    CLUSTERS_KEY,
    DECISIONING_GROUP,
    DECISIONS_KEY,
    MESSAGES_KEY,
    PRODUCT_LISTS_KEY,
    PROPENSITY_KEY,
    RECOMMENDER_KEY,
    TRIGGER_AUDIENCE_KEY,
)
from orchestration.metadata import mlflow_run_metadata, run_metadata, table_metadata
from orchestration.quality import gated_deps
from orchestration.resources import DUCKDB_POOL, TesseraResource
from tessera import markdown
from tessera.decisioning.catalogue import CatalogueError, load_catalogue
from tessera.decisioning.steps import NoBanditState, make_decisions, refresh_state, render_day
from tessera.realtime import audience


def catalogue_or_fail():
    try:
        return load_catalogue()
    except CatalogueError as e:
        raise dg.Failure(description=f"the action catalogue is invalid: {e}") from e


def state_markdown(state) -> str:
    return markdown.table(
        [
            (r.action_id, r.variant_id, r.trials, r.conversions, f"{r.posterior_mean:.4f}", f"{r.traffic_share:.3f}")
            for r in state.itertuples()
        ],
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
    started = time.perf_counter()
    settings = tessera.settings()
    catalogue = catalogue_or_fail()
    with tessera.duckdb() as con:
        done = refresh_state(con, catalogue, settings, tags={"dagster_run_id": context.run_id, "source": "tessera"})
        table = table_metadata(con, "decisioning.bandit_state_versions")
    return dg.MaterializeResult(
        metadata={
            **table,
            **run_metadata(started, int(done.state["trials"].sum())),
            **mlflow_run_metadata(settings, done.mlflow_run_id),
            "state_version": done.version,
            "new_version": done.is_new,
            "versions_kept": int(done.versions_kept),
            "posteriors": dg.MetadataValue.md(state_markdown(done.state)),
            "exploration_share": dg.MetadataValue.json({k: round(v, 4) for k, v in done.exploration.items()}),
            "mlflow_run_id": done.mlflow_run_id,
        }
    )


@dg.asset(
    key=DECISIONS_KEY,
    deps=[
        BANDIT_KEY,  # after the erasure step (gated_deps), so the decisions are too
        *gated_deps(
            "dim_customers",
            "active_customers",
            "customer_rfm",
            "customer_features",
            "customer_rule_segments",
            "customer_consents",
            "fct_events",
            after_erasure=False,
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
    started = time.perf_counter()
    settings = tessera.settings()
    catalogue = catalogue_or_fail()
    with tessera.duckdb() as con:
        try:
            done = make_decisions(con, catalogue, settings)
        except NoBanditState as e:
            raise dg.Failure(description=str(e)) from e
        table = table_metadata(con, "decisioning.decisions", personal=("customer_key",))
    return dg.MaterializeResult(
        metadata={
            **table,
            **run_metadata(started, table["dagster/row_count"]),
            "bandit_state_version": done.state_version,
            "decisions": dg.MetadataValue.md(
                markdown.table(done.summary, ["action", "decision", "customers"], ("left", "left", "right"))
            ),
            # no decision is made on a channel the customer cannot be reached on (tessera/decisioning/decide.py)
            "unreachable": dg.MetadataValue.md(
                markdown.table(
                    done.unreachable,
                    ["channel", "why", "customers", "of whom an action was eligible"],
                    ("left", "left", "right", "right"),
                )
            ),
            "variants_sent": dg.MetadataValue.json(done.variants_sent),
            "exploration_share_realised": dg.MetadataValue.json(done.exploration_realised),
        }
    )


@dg.asset(
    key=MESSAGES_KEY,
    deps=[
        DECISIONS_KEY,  # after the erasure step, so the messages are too
        *gated_deps("dim_customers", "dim_products", "customer_consents", after_erasure=False),
        RECOMMENDER_KEY,
        CLUSTERS_KEY,
    ],
    group_name=DECISIONING_GROUP,
    description=(
        "The messages to send, rendered: subject (plain text) and body (Jinja2, HTML-escaped) of every 'send' decision "
        "into decisioning.messages, with body_ref, the sha256 of the body. "
        "Previews of the first messages of each variant are written as files (metadata: previews), and the "
        "day's campaign report, per action and variant (metadata: campaign_report; docs/decisioning.md)."
    ),
    kinds={"python", "duckdb"},
    owners=["team:data-platform"],
    pool=DUCKDB_POOL,
)
def rendered_messages(context: dg.AssetExecutionContext, tessera: TesseraResource) -> dg.MaterializeResult:
    started = time.perf_counter()
    with tessera.duckdb() as con:
        rendered, preview_dir, report = render_day(con, catalogue_or_fail(), tessera.settings())
        # subjects and bodies greet customers by name: masked in the UI's preview
        table = table_metadata(con, "decisioning.messages", personal=("customer_key", "subject", "body"))
    seconds = time.perf_counter() - started
    previews = markdown.table(
        [(a, v, m, p) for a, v, m, _, p in rendered.previews], ["action", "variant", "message", "file"]
    )
    return dg.MaterializeResult(
        metadata={
            **table,
            **run_metadata(started, rendered.messages),
            "messages": rendered.messages,
            "distinct_bodies": rendered.bodies,
            "messages_per_second": round(rendered.messages / seconds, 1) if seconds else 0.0,
            "messages_per_variant": dg.MetadataValue.json(rendered.per_variant),
            "previews": dg.MetadataValue.path(str(preview_dir / "index.html")),
            # the marketer's daily page: counts per action and variant, split, uplift, reasons, previews
            "campaign_report": dg.MetadataValue.path(str(report.path)),
            "campaign_report_url": dg.MetadataValue.url(report.path.resolve().as_uri()),
            "sent_held_out_no_consent_capped": dg.MetadataValue.json(report.totals),
            "preview_files": dg.MetadataValue.md(previews),
        }
    )


@dg.asset(
    key=TRIGGER_AUDIENCE_KEY,
    deps=[
        *gated_deps(
            "int_identities_resolved",
            "dim_customers",
            "active_customers",
            "customer_rfm",
            "customer_features",
            "customer_rule_segments",
            "customer_consents",
            "dim_products",
            "fct_orders",
        ),
        RECOMMENDER_KEY,
        CLUSTERS_KEY,
        PRODUCT_LISTS_KEY,
    ],
    group_name=DECISIONING_GROUP,
    description=(
        "What the realtime trigger worker (`tessera realtime triggers`) knows of each customer, exported "
        "from the warehouse into $TESSERA_DATA_DIR/realtime/trigger_audience: visitor ids (CRM ids, linked "
        "cookies) to customers, each with its customer_pkey, reach per channel, granted consents, template "
        "fields and top recommendations; products with their bought-together lists. Internal data (it "
        "holds identifiers), never published; an erasure rewrites it. docs/realtime_triggers.md."
    ),
    kinds={"python", "duckdb", "parquet"},
    owners=["team:data-platform"],
    pool=DUCKDB_POOL,
)
def trigger_audience(context: dg.AssetExecutionContext, tessera: TesseraResource) -> dg.MaterializeResult:
    started = time.perf_counter()
    settings = tessera.settings()
    out_dir = audience.default_dir(settings.data_dir)
    with tessera.duckdb(read_only=True) as con:
        manifest = audience.export(con, out_dir, settings.pseudonym_salt)
    return dg.MaterializeResult(
        metadata={
            **run_metadata(started, manifest["rows"]["customers"]),
            "version": manifest["version"],
            "as_of_date": manifest["as_of_date"],
            "rows": dg.MetadataValue.json(manifest["rows"]),
            "path": dg.MetadataValue.path(str(out_dir / manifest["version"])),
        }
    )


decisioning_assets = [bandit_state, decisions, rendered_messages, trigger_audience]
