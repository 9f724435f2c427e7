"""The asset graph's shape: keys, groups, blocking gates and wiring. Catches accidental rewiring."""

from __future__ import annotations

import json

import dagster as dg

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
