"""Jobs, the schedule, the landing-files sensor, freshness checks and retries on transient errors."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import dagster as dg
import pytest

from orchestration.automation import (
    build_freshness_checks,
    changed_sources,
    freshness_assets,
    landing_files_sensor,
)
from orchestration.definitions import defs
from tests.conftest import duckdb_held, run_job, use_data_dir

SECOND = 1_000_000_000


def key(path: str) -> dg.AssetKey:
    return dg.AssetKey(path.split("/"))


def test_named_jobs_select_their_part_of_the_graph():
    def assets(job: str) -> set[str]:
        return {k.to_user_string() for k in defs.resolve_job_def(job).asset_layer.selected_asset_keys}

    view, retrain, publish, everything = (
        assets(j) for j in ("refresh_customer_view", "retrain_recommender", "publish", "tessera_all")
    )
    assert {
        "raw/events",
        "identity/identity_map",
        "marts/dim_customers",
        "quarantine/quarantined_records",
        "privacy/erasure",
    } <= view
    assert not any(a.startswith(("ml/", "publish/")) for a in view)
    assert retrain == {"ml/recommendation_candidates"}
    assert publish == {
        "publish/customer_recommendations",
        "publish/customer_scores",
        "publish/customer_segments",
        "publish/campaign_uplift",
        "publish/product_recommendations",
        # the anonymous sessions' index, released with the rest (tessera/publish/sessions.py)
        "publish/session_index",
        "publish/next_best_actions",
        "publish/campaign_outbox",
        # every table of the run released in one step (docs/publishing.md)
        "publish/release",
        # decided and rendered from the current model tables whenever the outbox is published
        "decisioning/bandit_state",
        "decisioning/decisions",
        "decisioning/rendered_messages",
        # the realtime trigger worker's view of the customers, exported with the day's decisions
        "decisioning/trigger_audience",
    }
    assert view | retrain | publish <= everything
    schedule = defs.resolve_schedule_def("daily_full_refresh")
    assert schedule.job_name == "tessera_all" and schedule.cron_schedule == "0 3 * * *"
    assert schedule.execution_timezone == "UTC"


def test_full_refresh_reaches_every_loader_and_both_dbt_steps():
    from orchestration.run import full_refresh_config

    ops = full_refresh_config(defs.resolve_job_def("tessera_all"))["ops"]
    assert set(ops) == {
        f"raw__{s}"
        for s in (
            "customers",
            "products",
            "orders",
            "order_items",
            "pos_transactions",
            "events",
            "email_events",
            "privacy",
            "identifiers",
        )
    } | {"dbt_staging", "dbt_marts"}
    assert all(v == {"config": {"full_refresh": True}} for v in ops.values())


def test_changed_sources_sees_added_changed_and_removed_files_and_waits_for_settling_ones():
    now = 1_000 * SECOND
    before = {"events": {"a.csv": [10, 1 * SECOND]}, "orders": {"o.csv": [5, 1 * SECOND]}, "products": {}}
    same = changed_sources(before, before, now, 30 * SECOND)
    assert same == ([], before)
    added = {**before, "events": {"a.csv": [10, 1 * SECOND], "b.csv": [7, 2 * SECOND]}}
    assert changed_sources(before, added, now, 30 * SECOND) == (["events"], added)
    grown = {**before, "orders": {"o.csv": [9, 3 * SECOND]}}
    assert changed_sources(before, grown, now, 30 * SECOND)[0] == ["orders"]
    removed = {**before, "orders": {}}
    assert changed_sources(before, removed, now, 30 * SECOND)[0] == ["orders"]
    # a file written 5 s ago may still be growing: not yet, and the old state stays in the cursor
    writing = {**before, "events": {"a.csv": [10, 1 * SECOND], "b.csv": [7, now - 5 * SECOND]}}
    changed, cursor = changed_sources(before, writing, now, 30 * SECOND)
    assert changed == [] and cursor["events"] == before["events"]
    # first tick: every source with files is new
    assert changed_sources({}, before, now, 30 * SECOND)[0] == ["events", "orders"]
    # the stream worker's files appear whole (renamed into place): no settling, else a file every
    # few seconds would keep the events folder from ever settling
    streamed = {**before, "events": {"a.csv": [10, 1 * SECOND], "stream-20261207T100000Z-1-0-w.jsonl": [7, now]}}
    assert changed_sources(before, streamed, now, 30 * SECOND) == (["events"], streamed)


def _evaluate(cursor: str | None) -> dg.SensorResult:
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        return landing_files_sensor(context)


def _landing_folder(tmp_path, monkeypatch, source: str, settle_seconds: int):
    use_data_dir(monkeypatch, tmp_path / "data")
    monkeypatch.setenv("TESSERA_LANDING_SETTLE_SECONDS", str(settle_seconds))
    folder = tmp_path / "data" / "landing" / source
    folder.mkdir(parents=True)
    return folder


def test_landing_sensor_requests_what_depends_on_the_new_files_once(tmp_path, monkeypatch):
    events = _landing_folder(tmp_path, monkeypatch, "events", settle_seconds=0)
    (events / "events_2026-11-01.csv").write_text("event_id\ne1\n")

    first = _evaluate(None)
    [request] = first.run_requests
    selected = {k.to_user_string() for k in request.asset_selection}
    # clickstream is processed incrementally: its load, the stg_events table and the incremental
    # int_events. The view after them (fct_events) needs no rebuild; nothing that aggregates
    # history runs
    assert selected == {"raw/events", "staging/stg_events", "intermediate/int_events"}
    assert request.tags["tessera/sources"] == "events"
    # the run carries the gates of what it builds, never the freshness checks
    checks = {(c.asset_key.to_user_string(), c.name) for c in request.asset_check_keys}
    assert ("raw/events", "gx_raw_events") in checks
    assert ("intermediate/int_events", "unique_int_events_event_id") in checks
    assert not [c for c in checks if "freshness" in c[1]]
    assert {a for a, _ in checks} <= selected

    # nothing new: skipped, and the same files never make a second run request
    second = _evaluate(first.cursor)
    assert not second.run_requests and "no landing folder changed" in second.skip_reason.skip_message

    (events / "events_2026-11-02.csv").write_text("event_id\ne2\n")
    third = _evaluate(first.cursor)
    [again] = third.run_requests
    assert again.run_key != request.run_key
    assert json.loads(third.cursor)["events"].keys() == {"events_2026-11-01.csv", "events_2026-11-02.csv"}


def test_landing_sensor_requests_everything_downstream_of_a_source_not_processed_incrementally(tmp_path, monkeypatch):
    customers = _landing_folder(tmp_path, monkeypatch, "customers", settle_seconds=0)
    (customers / "customers.csv").write_text("customer_id\nc1\n")
    events = tmp_path / "data" / "landing" / "events"
    events.mkdir()
    (events / "events_2026-11-01.csv").write_text("event_id\ne1\n")

    [request] = _evaluate(None).run_requests
    selected = {k.to_user_string() for k in request.asset_selection}
    assert {
        "raw/customers",
        "raw/events",
        "identity/identity_map",
        "marts/dim_customers",
        "marts/fct_events",
        "marts/customer_features",
        "publish/customer_scores",
    } <= selected
    # other sources are not reloaded; the recommender retrains on its own schedule
    assert not {"raw/orders", "ml/recommendation_candidates", "publish/customer_recommendations"} & selected
    assert request.tags["tessera/sources"] == "customers,events"
    checks = {(c.asset_key.to_user_string(), c.name) for c in request.asset_check_keys}
    assert ("marts/fct_events", "gx_marts_fct_events") in checks


def test_landing_sensor_leaves_a_file_being_written_for_a_later_tick(tmp_path, monkeypatch):
    orders = _landing_folder(tmp_path, monkeypatch, "orders", settle_seconds=3600)
    (orders / "orders.csv").write_text("order_id\no1\n")
    result = _evaluate(None)
    assert (
        not result.run_requests
        and "settling" in result.skip_reason.skip_message
        and "orders" in result.skip_reason.skip_message
    )
    assert json.loads(result.cursor)["orders"] == {}


def _freshness_defs(hours: float) -> tuple[dg.Definitions, list]:
    checks = build_freshness_checks(hours)
    job = dg.define_asset_job("freshness", selection=dg.AssetSelection.checks(*checks))
    specs = [dg.AssetSpec(k) for k in freshness_assets()]
    return dg.Definitions(assets=specs, asset_checks=checks, jobs=[job]), checks


def _freshness_results(instance, hours: float) -> dict[str, bool]:
    definitions, _ = _freshness_defs(hours)
    result = definitions.resolve_job_def("freshness").execute_in_process(instance=instance)
    return {e.asset_key.to_user_string(): e.passed for e in result.get_asset_check_evaluations()}


def test_freshness_checks_cover_the_customer_view_and_published_outputs_and_fail_when_overdue():
    covered = {k.to_user_string() for k in freshness_assets()}
    assert {"marts/dim_customers", "marts/customer_features", "publish/customer_recommendations"} <= covered
    assert {"publish/customer_scores", "publish/customer_segments"} <= covered
    with dg.instance_for_test() as instance:
        for k in freshness_assets():
            instance.report_runless_asset_event(dg.AssetMaterialization(k))
        assert set(_freshness_results(instance, 26).values()) == {True}
        assert len(_freshness_results(instance, 26)) == len(covered)
        time.sleep(1.5)
        one_second = timedelta(seconds=1) / timedelta(hours=1)
        assert set(_freshness_results(instance, one_second).values()) == {False}
    # the jobs never run them: a run would judge its own freshness before it has materialized
    checks = {c.key for d in build_freshness_checks(26) for c in d.check_specs}
    for job in ("tessera_all", "refresh_customer_view", "publish"):
        node = defs.resolve_job_def(job)
        assert not checks & set(node.asset_layer.asset_graph.asset_check_keys)


@pytest.mark.graph
def test_a_step_meeting_a_held_file_is_retried_and_a_broken_file_is_not(tmp_path, monkeypatch):
    from tessera.landing.generate import GenerateConfig, generate
    from tessera.settings import load_settings

    use_data_dir(monkeypatch, tmp_path / "data")
    monkeypatch.setenv("TESSERA_DUCKDB_LOCK_WAIT_SECONDS", "1")
    monkeypatch.setenv("TESSERA_STEP_RETRY_SECONDS", "3")
    settings = load_settings()
    generate(GenerateConfig(customers=50, days=10, seed=3), settings.landing_dir, settings.truth_dir)
    settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb_held(settings.duckdb_path, 3):
        result = run_job([key("raw/products")])
    assert result.success
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) >= 1
    assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()} == {"raw/products"}

    # a file that cannot be read fails at once: retrying would fail the same way
    (settings.landing_dir / "products" / "broken.parquet").write_bytes(b"not parquet")
    broken = run_job([key("raw/products")])
    assert not broken.success
    assert not [e for e in broken.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
