"""What the Dagster UI shows: every asset described, owned, grouped and kinded; every table asset
with its schema, row count, preview, duration and rows processed (checked against DuckDB); ML
assets linked to their MLflow run with a chart; gates with their Great Expectations results."""

from __future__ import annotations

import base64

import dagster as dg
import duckdb

from orchestration.definitions import defs

KNOWN_KINDS = {"dbt", "duckdb", "python", "lightfm", "mlflow", "great_expectations", "scikitlearn", "parquet"}


def test_every_asset_has_a_description_an_owner_a_group_and_kinds():
    graph = defs.resolve_asset_graph()
    kinds_seen = set()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and len(node.description) > 20, key
        assert node.owners, key
        assert node.group_name and node.group_name != "default", key
        assert node.kinds and node.kinds <= KNOWN_KINDS, (key, node.kinds)
        kinds_seen |= node.kinds
    assert {"dbt", "duckdb", "python", "lightfm", "mlflow", "great_expectations"} <= kinds_seen


def _materializations(result) -> dict[str, dict]:
    return {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}


def test_every_table_asset_shows_schema_row_count_preview_duration_and_rows(pipeline, pipeline_tables):
    result, _ = pipeline
    by_asset = _materializations(result)
    assert len(by_asset) > 40
    for asset, metadata in by_asset.items():
        # compared with the tables as the run left them (later tests change the data)
        rows, columns = pipeline_tables[metadata["table"].value]
        assert metadata["dagster/row_count"].value == rows, asset
        assert [c.name for c in metadata["dagster/column_schema"].schema.columns] == columns, asset
        preview = metadata["preview"].value
        assert preview == "(no rows)" if rows == 0 else preview.count("\n") == min(rows, 5) + 1, asset
        assert metadata["duration_seconds"].value >= 0, asset
        assert metadata["rows_processed"].value >= 0, asset
    # a loader processed every landing record; a dbt model's rows are the rows it wrote
    raw = by_asset["raw/customers"]
    assert raw["rows_processed"].value == raw["landing_records"].value
    dim = by_asset["marts/dim_customers"]
    assert dim["rows_processed"].value == dim["dagster/row_count"].value > 0
    assert dim["duration_seconds"].value > 0


def test_previews_never_show_personal_data(pipeline):
    result, settings = pipeline
    by_asset = _materializations(result)
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        emails = {r[0] for r in con.execute("select email from marts.dim_customers where email is not null").fetchall()}
        raw_emails = {r[0] for r in con.execute("select email from raw.customers where email is not null").fetchall()}
    finally:
        con.close()
    for asset in ("marts/dim_customers", "raw/customers", "staging/stg_customers"):
        preview = by_asset[asset]["preview"].value
        assert "***" in preview, asset
        assert not any(e in preview for e in emails | raw_emails), asset
    # what is not personal stays readable
    assert "customer_key" in by_asset["marts/dim_customers"]["preview"].value


def test_ml_assets_link_their_mlflow_run_and_show_a_chart_logged_there(pipeline):
    from mlflow import MlflowClient

    result, settings = pipeline
    by_asset = _materializations(result)
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    links = {
        "ml/recommendation_candidates": ["mlflow_run"],
        "ml/customer_clusters": ["mlflow_run"],
        "ml/propensity_scores": ["purchased_next_30d/mlflow_run", "churned_next_30d/mlflow_run"],
    }
    for asset, labels in links.items():
        metadata = by_asset[asset]
        for label in labels:
            url = metadata[label].value
            assert url.startswith(f"{settings.mlflow_ui_url}/#/experiments/"), url
            run_id = url.rsplit("/", 1)[1]
            run = client.get_run(run_id)
            assert url.split("/")[-3] == run.info.experiment_id
            plots = [a.path for a in client.list_artifacts(run_id, "plots")]
            assert len(plots) == 1 and plots[0].endswith(".png"), plots
        chart = metadata["plot"].value
        assert chart.startswith("![") and "data:image/png;base64," in chart
        png = base64.b64decode(chart.split("base64,", 1)[1].rstrip(")"))
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    # key metrics are numbers, so Dagster plots them run over run
    assert isinstance(by_asset["ml/recommendation_candidates"]["ndcg_at_10"], dg.FloatMetadataValue)


def test_gates_show_their_great_expectations_results(pipeline):
    result, _ = pipeline
    gates = [e for e in result.get_asset_check_evaluations() if e.check_name.startswith("gx_")]
    assert len(gates) >= 16
    for gate in gates:
        table = gate.metadata["expectations"].value
        evaluated = gate.metadata["expectations_evaluated"].value
        assert table.count("\n| pass |") + table.count("\n| **FAIL** |") == evaluated, gate.check_name
        assert gate.metadata["data_docs"].value.endswith(".html")
