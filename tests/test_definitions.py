"""The asset graph's shape: keys, groups, blocking gates and wiring. Catches accidental rewiring."""

from __future__ import annotations

import json

import dagster as dg

from orchestration.dbt import GATED_MARTS as GATED_MARTS_NAMES
from orchestration.definitions import defs
from tessera.landing.contract import LINEAGE_COLUMNS, SOURCES
from tessera.quality.suites import TABLE_ROWS
from tessera.settings import EXPECTATIONS_DIR

GROUPS = {
    "sources": {f"raw/{s.name}" for s in SOURCES} | {"raw/load_rejects", "raw/load_audit", "raw/erased_rows"},
    "reference": {
        "reference/countries",
        "reference/country_aliases",
        "reference/currencies",
        "reference/fx_rates",
        "reference/rfm_segment_map",
    },
    "staging": {f"staging/stg_{s.name}" for s in SOURCES} | {"staging/stg_fx_rates"},
    "intermediate": {
        "intermediate/int_person_records",
        "intermediate/int_person_identifiers",
        "intermediate/int_identities_resolved",
        "intermediate/int_customer_attributes_survived",
        "intermediate/int_order_lines_current",
        "intermediate/int_order_lines",
        "intermediate/int_events",
        "intermediate/int_privacy_requests_resolved",
        "intermediate/int_rejected_records",
    },
    "identity": {"identity/identity_map", "identity/identity_evaluation"},
    "marts": {
        "marts/dim_customers",
        "marts/dim_products",
        "marts/fct_orders",
        "marts/fct_order_items",
        "marts/fct_events",
        "marts/fct_customer_product_interactions",
        "marts/customer_rfm",
        "marts/customer_feature_snapshots",
        "marts/customer_rec_user_features",
        "marts/customer_features",
        "marts/customer_propensity_labels",
        "marts/customer_rule_segments",
        "marts/customer_consents",
        # the unsalted inputs of the published tables (dbt_project/models/audiences): views in the
        # marts group, so the customer view builds them and publishing reads them
        "audiences/active_customers",
        "audiences/consented_customers",
    },
    "quarantine": {
        "quarantine/quarantined_records",
        "quarantine/source_reconciliation",
        "quarantine/flagged_values",
    },
    "ml": {
        "ml/recommendation_candidates",
        "ml/propensity_scores",
        "ml/customer_clusters",
        "ml/product_recommendations",
    },
    "privacy": {"privacy/erasure"},
    "publish": {
        "publish/customer_recommendations",
        "publish/customer_segments",
        "publish/customer_scores",
        "publish/campaign_uplift",
        "publish/product_recommendations",
        "publish/next_best_actions",
        "publish/campaign_outbox",
        # the recent web sessions' products, for session recommendations (orchestration/sessions.py)
        "publish/session_index",
        "publish/release",
    },
    "decisioning": {
        "decisioning/bandit_state",
        "decisioning/decisions",
        "decisioning/rendered_messages",
        # what the realtime trigger worker knows of each customer (tessera/realtime/audience.py)
        "decisioning/trigger_audience",
    },
}


def test_asset_keys_and_groups_are_as_designed():
    graph = defs.resolve_asset_graph()
    actual: dict[str, set[str]] = {}
    for key in graph.get_all_asset_keys():
        actual.setdefault(graph.get(key).group_name, set()).add(key.to_user_string())
    assert actual == GROUPS


def test_every_raw_source_has_one_blocking_gate():
    graph = defs.resolve_asset_graph()
    gates = {k for k in graph.asset_check_keys if k.name.startswith("gx_raw_")}
    assert {k.asset_key.to_user_string() for k in gates} == {f"raw/{s.name}" for s in SOURCES}
    for key in gates:
        assert graph.get_check_spec(key).blocking, key


def test_published_outputs_sit_downstream_of_every_gate():
    graph = defs.resolve_asset_graph()
    # email engagement feeds no mart yet (customer features come with the segments issue)
    for source in [s for s in SOURCES if s.name != "email_events"]:
        downstream = {
            k.to_user_string()
            for k in dg.AssetSelection.keys(dg.AssetKey(["raw", source.name])).downstream().resolve(graph)
        }
        assert downstream & GROUPS["publish"], source.name
    for output in ("customer_recommendations", "customer_segments", "customer_scores"):
        upstream = {
            k.to_user_string()
            for k in dg.AssetSelection.keys(dg.AssetKey(["publish", output])).upstream().resolve(graph)
        }
        assert {"raw/customers", "raw/orders", "raw/order_items", "raw/products"} <= upstream, output


def test_expectation_suites_only_name_contract_columns():
    for source in SOURCES:
        suite = json.loads((EXPECTATIONS_DIR / f"raw_{source.name}.json").read_text())
        columns = {e["kwargs"]["column"] for e in suite["expectations"] if "column" in e["kwargs"]}
        # plus the derived whole-table row count and one flag per referential-integrity reference
        allowed = set(source.column_names) | {TABLE_ROWS} | {r["as"] for r in suite["meta"].get("references", [])}
        assert {r["column"] for r in suite["meta"].get("references", [])} <= set(source.column_names)
        assert columns <= allowed, (source.name, columns - allowed)
        schema = [e for e in suite["expectations"] if e["type"] == "expect_table_columns_to_match_set"]
        assert schema[0]["kwargs"]["column_set"] == source.column_names + list(LINEAGE_COLUMNS)


def test_identity_sits_between_staging_and_marts_behind_blocking_gates():
    graph = defs.resolve_asset_graph()
    key = dg.AssetKey(["identity", "identity_map"])
    assert dg.AssetKey(["intermediate", "int_person_records"]) in graph.get(key).parent_keys
    assert dg.AssetKey(["intermediate", "int_identities_resolved"]) in graph.get(key).child_keys
    checks = {k.name: graph.get_check_spec(k).blocking for k in graph.asset_check_keys if k.asset_key == key}
    assert checks == {"identity_cluster_size_within_limit": True, "identity_merge_rate_drift_within_limit": True}


def test_key_marts_and_published_outputs_have_blocking_suites_and_every_suite_is_used():
    from orchestration.quality import GATED_MARTS

    graph = defs.resolve_asset_graph()
    gates = {
        k: graph.get_check_spec(k) for k in graph.asset_check_keys if k.name.startswith(("gx_marts_", "gx_publish_"))
    }
    # publish/release moves checked versions into place: it builds no table of its own to validate
    published_tables = GROUPS["publish"] - {"publish/release"}
    assert {k.asset_key.to_user_string() for k in gates} == {f"marts/{m}" for m in GATED_MARTS} | published_tables
    assert all(spec.blocking for spec in gates.values())
    suites = {p.stem for p in EXPECTATIONS_DIR.glob("*.json")}
    expected = {f"raw_{s.name}" for s in SOURCES} | {f"marts_{m}" for m in GATED_MARTS}
    assert suites == expected | {f"publish_{k.split('/')[1]}" for k in published_tables}


def test_erasure_comes_after_every_table_of_the_customer_view_and_before_every_model_and_output():
    # issue 39: privacy/erasure had an edge from 43 assets and to 16, a hub in the global lineage;
    # now it follows the ends of the customer view's lineage and precedes the assets that read it,
    # and the order every run keeps is the same
    from orchestration.keys import ERASURE_KEY

    graph = defs.resolve_asset_graph()
    node = graph.get(ERASURE_KEY)
    upstream = dg.AssetSelection.keys(ERASURE_KEY).upstream().resolve(graph)
    view = {"staging", "intermediate", "identity", "marts", "quarantine", "reference"}
    built = {k for k in graph.get_all_asset_keys() if graph.get(k).group_name in view} - {
        dg.AssetKey(["identity", "identity_evaluation"])  # a report on the map: nothing to erase
    }
    assert built <= upstream
    downstream = dg.AssetSelection.keys(ERASURE_KEY).downstream().resolve(graph) - {ERASURE_KEY}
    after = {k for k in graph.get_all_asset_keys() if graph.get(k).group_name in {"ml", "decisioning", "publish"}}
    assert after == downstream
    # the gated marts hold it back as they hold back everything after the customer view
    assert {dg.AssetKey(["marts", m]) for m in GATED_MARTS_NAMES} <= node.parent_keys
    assert len(node.parent_keys) <= 12
    assert {k.to_user_string() for k in node.child_keys} == {
        "ml/recommendation_candidates",
        "ml/propensity_scores",
        "ml/customer_clusters",
        "ml/product_recommendations",
        "decisioning/bandit_state",
        "decisioning/trigger_audience",
        "publish/session_index",
    }
    # one edge less than the global graph had for each it no longer needs (306 before issue 39)
    assert sum(len(graph.get(k).parent_keys) for k in graph.get_all_asset_keys()) <= 266


def test_a_landing_sensor_run_reaches_each_output_through_the_erasure_when_it_runs_it():
    # the order holds in a run of a part of the graph too: every asset a sensor run selects after
    # the erasure has its whole path from the erasure selected
    from orchestration.automation import sensor_selection
    from orchestration.keys import ERASURE_KEY

    graph = defs.resolve_asset_graph()
    for source in SOURCES:
        selected = sensor_selection([source.name]).resolve(graph)
        if ERASURE_KEY not in selected:
            continue
        after = dg.AssetSelection.keys(ERASURE_KEY).downstream().resolve(graph) & selected
        for key in after - {ERASURE_KEY}:
            paths = dg.AssetSelection.keys(ERASURE_KEY).downstream().resolve(graph) & dg.AssetSelection.keys(
                key
            ).upstream().resolve(graph)
            assert paths <= selected, (source.name, key)
