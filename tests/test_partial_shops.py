"""Partial shops: a shop that delivers only some landing sources runs the whole graph, publishes
what its data supports and says why for the rest (docs/landing_contract.md, "Partial shops").

Each shape is the demo generator's data with the folders it lacks removed: orders only (no CRM
profiles, store receipts, clickstream, email or privacy), a clickstream only (events and the
catalogue; first anonymous, then with its logins), and CRM with orders but no clickstream.

Seed 7 as the session's warehouse (tests/conftest.py SMALL): at 300 customers a seed's 0.5 %
malformed timestamps can pass the raw orders gate's 1 % tolerance by chance (seed 1: 5 of 488
orders), which blocks every shape alike and says nothing about partial shops."""

from __future__ import annotations

import json
import re
import shutil
from datetime import date, timedelta

import dagster as dg
import duckdb
import polars as pl
import pytest

from orchestration.run import empty_outputs, run_pipeline, skipped_models
from tessera.landing.contract import SOURCES_BY_NAME
from tessera.landing.generate import GenerateConfig, generate
from tessera.publish import snapshots
from tessera.publish.outputs import NO_CUSTOMER
from tessera.publish.published import PUBLISHED
from tessera.publish.sessions import SESSION_INDEX
from tessera.quality.suites import TABLE_ROWS
from tessera.settings import EXPECTATIONS_DIR, load_settings
from tests.conftest import run_job, use_data_dir

SHOP = GenerateConfig(customers=300, days=60, seed=7, end_date=date(2026, 10, 31))
ALL_SOURCES = set(SOURCES_BY_NAME)
CUSTOMER_TABLES = [
    "publish/customer_segments",
    "publish/customer_scores",
    "publish/campaign_uplift",
    "publish/customer_recommendations",
    "publish/next_best_actions",
    "publish/campaign_outbox",
]
UPLIFT_EMPTY = next(p.empty_when for p in PUBLISHED if p.name == "campaign_uplift")
# a shop without clickstream has no web session for the anonymous visitors' index
NO_SESSIONS = SESSION_INDEX.empty_when


def shop_with(tmp_path, monkeypatch, sources: set[str]):
    """Settings of a fresh data directory whose landing holds the demo shop's `sources` only."""
    use_data_dir(monkeypatch, tmp_path / "data")
    settings = load_settings()
    generate(SHOP, settings.landing_dir, settings.truth_dir)
    for name in ALL_SOURCES - sources:
        if (settings.landing_dir / name).exists():
            shutil.rmtree(settings.landing_dir / name)
    return settings


def q(settings, sql: str) -> list[tuple]:
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def one(settings, sql: str):
    [(value,)] = q(settings, sql)
    return value


def failed_checks(result: dg.ExecuteInProcessResult) -> list[tuple[str, str]]:
    return [(e.asset_key.to_user_string(), e.check_name) for e in result.get_asset_check_evaluations() if not e.passed]


def gate(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def published_rows(settings) -> dict[str, int]:
    return {
        p.name: snapshots.current_snapshot(settings.publish_dir, p.name).manifest["rows"]
        for p in PUBLISHED
        if snapshots.current_version(settings.publish_dir, p.name)
    }


def test_a_source_never_delivered_passes_its_gate_and_one_that_drops_to_nothing_fails(tmp_path, monkeypatch):
    # the raw customers and products gates no longer require a row; the row-count change against
    # the last pass is judged on the table's count even when there is no row (or, for the events
    # validated file by file, no new file) for Great Expectations to judge
    from tessera.landing.loader import load_source
    from tessera.quality.gate import run_gate
    from tessera.quality.suites import record_pass

    use_data_dir(monkeypatch, tmp_path / "data")
    settings = load_settings()
    settings.ensure_dirs()
    con = duckdb.connect(str(settings.duckdb_path))
    try:
        for name in ("products", "customers", "events"):  # events reference products
            load_source(con, SOURCES_BY_NAME[name], settings.landing_dir)
            suite = EXPECTATIONS_DIR / f"raw_{name}.json"
            never = run_gate(con, settings, f"gx_raw_{name}", f"raw.{name}", suite, "run-1")
            assert (never.success, never.rows_in_table, never.failed) == (True, 0, [])
            # the source had 300 rows at its last pass; now it has none
            record_pass(con, f"gx_raw_{name}", f"raw.{name}", 300, "run-2")
            dropped = run_gate(con, settings, f"gx_raw_{name}", f"raw.{name}", suite, "run-3")
            assert not dropped.success
            assert [(f["expectation"], f["column"], f["observed"]) for f in dropped.failed] == [
                ("expect_column_values_to_be_between", TABLE_ROWS, 0)
            ]
            assert dropped.parameters["min_rows_vs_last_run"] == 150
            assert f"failed: expect_column_values_to_be_between({TABLE_ROWS})" in dropped.describe()
    finally:
        con.close()


@pytest.mark.graph
def test_an_orders_only_shop_knows_its_buyers_by_the_customer_id_on_their_orders(tmp_path, monkeypatch):
    settings = shop_with(tmp_path, monkeypatch, {"products", "orders", "order_items"})
    result = run_job()
    assert result.success and failed_checks(result) == []
    assert gate(result, "gx_raw_customers").metadata["rows_in_table"].value == 0

    # one customer per customer id on a usable order, without a profile or any attribute
    buyers = one(settings, "select count(distinct customer_id) from staging.stg_orders where invalid_reason is null")
    assert buyers > 100
    customers = q(
        settings,
        "select count(*), count(distinct anchor_customer_id), max(crm_profile_count), count(email), "
        "count(first_name), count(*) filter (where gender = 'U') from marts.dim_customers",
    )
    assert customers == [(buyers, buyers, 0, 0, 0, buyers)]
    assert (
        one(
            settings,
            "select count(*) from staging.stg_orders o where invalid_reason is null and customer_id not in "
            "(select anchor_customer_id from marts.dim_customers)",
        )
        == 0
    )
    # so every order has its buyer, and RFM ranks them
    assert q(settings, "select count(*) = count(customer_key) from marts.fct_orders") == [(True,)]
    assert one(settings, "select count(distinct rfm_segment) from marts.customer_rfm where r_score is not null") >= 3

    rows = published_rows(settings)
    assert rows["customer_segments"] == rows["customer_scores"] == buyers
    assert one(settings, "select count(distinct customer_pkey) from publish.customer_recommendations") == buyers
    assert rows["next_best_actions"] > 0
    # the recommender and the clusters train; the propensity models have no history to train on
    reasons = dict(skipped_models(result))
    assert reasons == {
        "ml/propensity_scores": "need 3 feature snapshots (train, evaluate, current), found 2",
    }
    assert one(settings, "select count(distinct cluster_id) from ml.customer_clusters where cluster_id >= 0") >= 2
    assert dict(empty_outputs(result)) == {
        "publish/campaign_uplift": UPLIFT_EMPTY,
        "publish/session_index": NO_SESSIONS,
    }


@pytest.mark.graph
def test_a_clickstream_only_shop_publishes_popular_products_then_its_logged_in_browsers(tmp_path, monkeypatch, capsys):
    settings = shop_with(tmp_path, monkeypatch, {"products", "events"})
    logged_in = tmp_path / "events_with_logins"
    shutil.copytree(settings.landing_dir / "events", logged_in)
    for path in sorted((settings.landing_dir / "events").glob("*.jsonl")):
        events = pl.read_ndjson(path, infer_schema_length=None)
        events.with_columns(customer_id=pl.lit(None, pl.String)).write_ndjson(path)

    # 1. anonymous visitors only: nobody is known, every customer table is published empty with why
    assert run_pipeline() == 0
    summary = capsys.readouterr().out
    assert "checks: " in summary and " 0 failed" in summary
    # dbt's console lines went to the run's dbt log, not between the progress lines
    (dbt_log,) = (settings.data_dir / "logs").glob("dbt-*.log")
    assert dbt_log.name.removeprefix("dbt-").removesuffix(".log") in summary.splitlines()[0]
    assert re.search(r"OK created sql \w+ model marts\.dim_customers", dbt_log.read_text())
    empty = ", ".join(sorted(ALL_SOURCES - {"products", "events"}, key=list(SOURCES_BY_NAME).index))
    assert f"landing sources without a row: {empty};" in summary
    assert f"published empty: {', '.join(CUSTOMER_TABLES)}: {NO_CUSTOMER}" in summary
    for asset, reason in (
        ("ml/recommendation_candidates", "no customer-product interaction yet"),
        ("ml/propensity_scores", "need 3 feature snapshots (train, evaluate, current), found 0"),
        ("ml/customer_clusters", "0 customers with an order: at least 3 are needed for 2 clusters"),
    ):
        assert f"model skipped, its asset written without it: {asset}: {reason}" in summary
    assert one(settings, "select count(*) from marts.dim_customers") == 0
    rows = published_rows(settings)
    assert {rows.pop(name) for name in [t.removeprefix("publish/") for t in CUSTOMER_TABLES]} == {0}
    # products are known without any customer: viewed together in anonymous sessions, and similar
    assert rows["product_recommendations"] > 0
    assert {r[0] for r in q(settings, "select distinct list_name from publish.product_recommendations")} == {
        "viewed_together",
        "similar",
    }
    # the storefront's fallback list ranks the products by the browsers who viewed or carted them
    snap = snapshots.current_snapshot(settings.publish_dir, "customer_recommendations")
    popular = [json.loads(line) for line in (snap.path / "exports" / "popular_products.jsonl").read_text().splitlines()]
    browsers = dict(
        q(
            settings,
            "select product_id, count(distinct anonymous_id) from intermediate.int_events "
            "where event_type in ('product_view', 'add_to_cart') group by 1",
        )
    )
    assert len(popular) >= 10 and popular[0]["visitors"] > 0
    assert [p["visitors"] for p in popular] == [browsers.get(p["product_id"], 0) for p in popular]
    assert [p["visitors"] for p in popular] == sorted((p["visitors"] for p in popular), reverse=True)
    assert {p["buyers"] for p in popular} == {0}

    # 2. the same clickstream with its logins, delivered again: each logged-in browser is a customer
    shutil.rmtree(settings.landing_dir / "events")
    shutil.copytree(logged_in, settings.landing_dir / "events")
    result = run_job()
    assert result.success and failed_checks(result) == []
    assert gate(result, "identity_merge_rate_drift_within_limit").metadata["note"].value == (
        "a run resolved no person record: nothing to compare"
    )
    logins = one(
        settings,
        "select count(distinct customer_id) from intermediate.int_events where customer_id is not null",
    )
    assert logins > 100
    assert q(settings, "select count(*), max(crm_profile_count) from marts.dim_customers") == [(logins, 0)]
    # features and segments are as of the day after the last event (no order to date them by)
    last_event = one(settings, "select max(event_at) from intermediate.int_events")
    assert q(settings, "select distinct as_of_date from marts.customer_rfm") == [
        (last_event.date() + timedelta(days=1),)
    ]
    assert q(settings, "select distinct rfm_segment from marts.customer_rfm") == [("Prospect",)]
    rows = published_rows(settings)
    assert rows["customer_segments"] == rows["customer_scores"] == logins
    assert one(settings, "select count(distinct customer_pkey) from publish.customer_recommendations") == logins
    reasons = dict(skipped_models(result))
    assert reasons["ml/customer_clusters"] == "0 customers with an order: at least 3 are needed for 2 clusters"
    assert reasons["ml/recommendation_candidates"].endswith("0 purchases to test on: a model cannot be evaluated")
    assert reasons["ml/propensity_scores"] == "need 3 feature snapshots (train, evaluate, current), found 2"


@pytest.mark.graph
def test_a_shop_without_clickstream_publishes_everything_for_its_crm_customers(tmp_path, monkeypatch):
    settings = shop_with(tmp_path, monkeypatch, ALL_SOURCES - {"events", "email_events"})
    result = run_job()
    assert result.success and failed_checks(result) == []
    assert q(settings, "select count(*) from marts.fct_events") == [(0,)]
    customers = one(settings, "select count(*) from audiences.active_customers")
    assert customers > 200
    assert one(settings, "select min(crm_profile_count) from marts.dim_customers") >= 1
    rows = published_rows(settings)
    assert rows["customer_segments"] == rows["customer_scores"] == customers
    assert one(settings, "select count(distinct customer_pkey) from publish.customer_recommendations") == customers
    assert rows["next_best_actions"] > 0 and rows["campaign_outbox"] > 0
    # the recommender trains on purchases alone; nothing else is skipped for want of clickstream
    assert "ml/recommendation_candidates" not in dict(skipped_models(result))
    assert one(settings, "select count(distinct cluster_id) from ml.customer_clusters where cluster_id >= 0") >= 2
    assert dict(empty_outputs(result)) == {
        "publish/campaign_uplift": UPLIFT_EMPTY,
        "publish/session_index": NO_SESSIONS,
    }
