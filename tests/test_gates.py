"""A corrupted landing file makes its gate fail, and nothing downstream of it is materialized."""

from __future__ import annotations

from datetime import date

import dagster as dg
import duckdb
import pandas as pd
import pytest

from tessera.landing.generate import GenerateConfig, generate
from tessera.settings import load_settings
from tests.conftest import SMALL, materialized_keys, published_fingerprint, run_job, use_data_dir


@pytest.fixture
def corrupted(tmp_path, monkeypatch):
    """Small demo data plus a second customers file whose header is garbage (no customer_id)."""
    use_data_dir(monkeypatch, tmp_path / "data")
    settings = load_settings()
    generate(
        GenerateConfig(customers=120, days=30, seed=3, end_date=date(2026, 10, 31)),
        settings.landing_dir,
        settings.truth_dir,
    )
    bad = settings.landing_dir / "customers" / "customers_export_broken.csv"
    bad.write_text("id;name;mail\n" + "".join(f"{i};someone;x{i}@example.com\n" for i in range(200)))
    return settings


def _published_tables(settings) -> int:
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        return con.execute(
            "select count(*) from information_schema.tables where table_schema in ('publish', 'ml', 'marts')"
        ).fetchone()[0]
    finally:
        con.close()


@pytest.mark.graph
def test_corrupted_customers_file_fails_its_gate_and_blocks_everything_downstream(corrupted):
    result = run_job()
    assert not result.success
    gate = [e for e in result.get_asset_check_evaluations() if e.check_name == "gx_raw_customers"]
    assert len(gate) == 1 and not gate[0].passed
    failed_expectations = {f["expectation"] for f in gate[0].metadata["failed_expectations"].value}
    assert "expect_column_values_to_not_be_null" in failed_expectations
    # issue 39: the step failed with "1 blocking asset check failed" and a stack trace naming neither
    # the expectation nor the file; now its message says which, on how many rows, from which file
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.user_failure_data.description
    assert message.startswith("quality gate gx_raw_customers stopped the run: raw.customers failed ")
    null_ids = next(
        line for line in message.splitlines() if "expect_column_values_to_not_be_null on customer_id" in line
    )
    assert (
        "200 in customers/customers_export_broken.csv" in null_ids or "200 in customers_export_broken.csv" in null_ids
    )
    assert "e.g. null" in null_ids and "nan" not in message
    keys = {k.to_user_string() for k in materialized_keys(result)}
    # the sources themselves load (the bad rows are visible in raw, with their file and row) ...
    assert "raw/customers" in keys
    # ... but no dbt model, no model and no published output is built in that run
    assert not [k for k in keys if not k.startswith("raw/")], keys
    assert _published_tables(corrupted) == 0


@pytest.mark.graph
def test_gate_also_blocks_a_run_that_selects_only_part_of_the_graph(corrupted):
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    selection = (
        dg.AssetSelection.keys(dg.AssetKey(["raw", "customers"])).downstream()
        | dg.AssetSelection.keys(dg.AssetKey(["raw", "customers"])).upstream()
    ).resolve(graph)
    # the dbt models need the other raw tables to exist, so load them in an earlier, clean run
    others = [k for k in graph.get_all_asset_keys() if k.path[0] == "raw" and k.path[1] != "customers"]
    assert run_job(others).success
    result = run_job(sorted(selection, key=str))
    assert not result.success
    keys = {k.to_user_string() for k in materialized_keys(result)}
    assert keys == {"raw/customers"}
    assert "marts/dim_customers" in {k.to_user_string() for k in selection}


@pytest.mark.graph
def test_a_quarantine_rate_over_the_limit_blocks_the_recommender_and_every_published_output(tmp_path, monkeypatch):
    """8 % of orders are dated in 2031. The raw gate cannot see that (the timestamps are well
    formed); staging quarantines them ('ordered_at in the future'), and the quarantine_rate dbt
    test on stg_orders (limit 5 %) fails: the dbt step fails and nothing downstream of it runs."""
    use_data_dir(monkeypatch, tmp_path / "data")
    settings = load_settings()
    generate(GenerateConfig(**SMALL), settings.landing_dir, settings.truth_dir)

    path = settings.landing_dir / "orders" / "orders.csv"
    orders = pd.read_csv(path, dtype=str, keep_default_na=False)
    future = orders.sample(frac=0.08, random_state=1).index
    orders.loc[future, "ordered_at"] = "2031-03-01T10:00:00+00:00"
    orders.to_csv(path, index=False)

    result = run_job()
    assert not result.success
    evaluations = result.get_asset_check_evaluations()
    assert all(e.passed for e in evaluations if e.check_name.startswith("gx_raw_"))
    failed_dbt = {e.check_name for e in evaluations if not e.passed}
    assert any("quarantine_rate" in name and "stg_orders" in name for name in failed_dbt), failed_dbt
    keys = {k.to_user_string() for k in materialized_keys(result)}
    assert "staging/stg_orders" in keys  # built, then its test failed
    assert not {
        k for k in keys if k.startswith(("identity/", "intermediate/int_order", "marts/", "ml/", "publish/"))
    }, keys

    # with the limit raised for this delivery, the same data goes through to the order facts
    from orchestration.definitions import defs

    monkeypatch.setenv("TESSERA_QUARANTINE_MAX_RATE", "0.2")
    # (with the tables the order gates check ids against)
    targets = [dg.AssetKey(["marts", m]) for m in ("fct_order_items", "fct_orders", "dim_products", "dim_customers")]
    facts = dg.AssetSelection.keys(*targets).upstream()
    rerun = run_job(sorted(facts.resolve(defs.resolve_asset_graph()), key=str))
    assert rerun.success and dg.AssetKey(["marts", "fct_order_items"]) in materialized_keys(rerun)


@pytest.mark.graph
def test_cluster_size_explosion_blocks_the_marts(tmp_path, monkeypatch):
    use_data_dir(monkeypatch, tmp_path / "data")
    monkeypatch.setenv("TESSERA_IDENTITY_MAX_CLUSTER_SIZE", "1")  # any merge is now an "explosion"
    settings = load_settings()
    generate(
        GenerateConfig(customers=120, days=30, seed=3, end_date=date(2026, 10, 31)),
        settings.landing_dir,
        settings.truth_dir,
    )
    result = run_job()
    assert not result.success
    gate = [e for e in result.get_asset_check_evaluations() if e.check_name == "identity_cluster_size_within_limit"]
    assert len(gate) == 1 and not gate[0].passed and gate[0].metadata["largest_cluster"].value >= 2
    keys = {k.to_user_string() for k in materialized_keys(result)}
    assert "identity/identity_map" in keys
    assert not {k for k in keys if k.startswith(("marts/", "ml/", "publish/"))}, keys


@pytest.mark.graph
def test_an_edited_rule_file_that_was_not_recompiled_stops_the_marts(tmp_path, monkeypatch):
    # Regression: the dbt_marts step once skipped this check, so an edited rule file ran stale SQL.
    import yaml

    import tessera.segments.rules as segments

    edited = tmp_path / "segment_rules.yml"
    rules = yaml.safe_load(segments.RULES_FILE.read_text())
    rules["segments"][0]["priority"] = 1
    edited.write_text(yaml.safe_dump(rules))
    monkeypatch.setattr(segments, "RULES_FILE", edited)
    use_data_dir(monkeypatch, tmp_path / "data")
    settings = load_settings()
    generate(
        GenerateConfig(customers=120, days=30, seed=3, end_date=date(2026, 10, 31)),
        settings.landing_dir,
        settings.truth_dir,
    )
    result = run_job()
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["dbt_marts"]
    cause = failures[0].event_specific_data.error.cause
    assert cause.cls_name == "SegmentRuleError" and "out of date" in cause.message
    keys = {k.to_user_string() for k in materialized_keys(result)}
    assert "identity/identity_map" in keys and not {k for k in keys if k.startswith(("marts/", "publish/"))}


def test_a_failed_gate_leaves_the_last_good_published_version_in_place(warehouse_copy):
    settings = warehouse_copy  # a good run published everything
    good = published_fingerprint(settings)
    assert {"customer_recommendations", "customer_segments", "customer_scores"} <= set(good)
    assert "customer_recommendations/customer_recommendations.parquet" in good

    # the next delivery carries a broken customers file: its gate fails ...
    bad = settings.landing_dir / "customers" / "customers_export_broken.csv"
    bad.write_text("id;name;mail\n" + "".join(f"{i};someone;x{i}@example.com\n" for i in range(400)))
    result = run_job()
    assert not result.success
    assert not next(e for e in result.get_asset_check_evaluations() if e.check_name == "gx_raw_customers").passed
    assert not {k.to_user_string() for k in materialized_keys(result) if k.path[0] in ("ml", "publish")}
    # ... and every published table and Parquet file is exactly the last good version
    assert published_fingerprint(settings) == good
