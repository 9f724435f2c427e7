"""Currencies: one ISO 4217 list shared by the seed and every suite, dated exchange rates, and a
currency the pipeline cannot use failing with the value, the file and where to fix it.

Issue 32 (item 6): selling in BRL meant editing one seed and 5 suites that each listed
GBP/EUR/USD, and the failing check named neither the value nor where to fix it. The dated rate
picked by an order's day, and the boundary day, are dbt unit tests
(dbt_project/models/staging/_fx_unit_tests.yml); here: the suites, the gate's message, and the
graph on generated data with bad currencies injected.
"""

from __future__ import annotations

import csv
import json

import dagster as dg
import duckdb
import pandas as pd
import pytest

from tessera.landing.generate import GenerateConfig, generate
from tessera.quality.suites import REFERENCE_SETS, gate_parameters, validate_table
from tessera.settings import DBT_PROJECT_DIR, EXPECTATIONS_DIR, load_settings
from tests.conftest import SMALL, run_job, use_data_dir

SEEDS = DBT_PROJECT_DIR / "seeds"


def _seed(name: str) -> list[dict]:
    with open(SEEDS / name, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_currency_seed_is_the_iso_4217_list_and_every_rate_names_a_code_of_it():
    codes = [r["code"] for r in _seed("currencies.csv")]
    # ISO's list one, published 2026-01-01, as the iso4217 package ships it (scripts/currency_seed.py)
    assert len(codes) == len(set(codes)) == 178
    assert all(len(c) == 3 and c.isalpha() and c.isupper() for c in codes)
    by_code = {r["code"]: r for r in _seed("currencies.csv")}
    assert (by_code["BRL"]["name"], by_code["BRL"]["minor_units"]) == ("Brazilian Real", "2")
    assert by_code["JPY"]["minor_units"] == "0" and by_code["BHD"]["minor_units"] == "3"
    assert by_code["XAU"]["minor_units"] == ""  # ISO: N.A.
    assert {r["currency"] for r in _seed("fx_rates.csv")} <= set(codes)


def test_the_existing_rates_are_the_first_dated_rows_so_earlier_results_keep_their_rates():
    rows = _seed("fx_rates.csv")
    assert list(rows[0]) == ["currency", "valid_from", "rate_to_base"]
    first = {}
    for r in sorted(rows, key=lambda r: r["valid_from"]):
        first.setdefault(r["currency"], (r["valid_from"], float(r["rate_to_base"])))
    assert first == {"GBP": ("1900-01-01", 1.0), "EUR": ("1900-01-01", 0.85), "USD": ("1900-01-01", 0.78)}


def test_no_suite_lists_currency_codes_every_currency_check_names_a_seed():
    named = {}
    for path in sorted(EXPECTATIONS_DIR.glob("*.json")):
        for e in json.loads(path.read_text())["expectations"]:
            if e["type"] == "expect_column_values_to_be_in_set" and e["kwargs"].get("column") == "currency":
                named[path.stem] = e["kwargs"]["value_set"]
    assert named == {
        "raw_orders": {"$PARAMETER": "iso_4217_currencies"},
        "raw_products": {"$PARAMETER": "iso_4217_currencies"},
        "raw_pos_transactions": {"$PARAMETER": "iso_4217_currencies"},
        "marts_fct_orders": {"$PARAMETER": "currencies_with_fx_rate"},
        "marts_fct_order_items": {"$PARAMETER": "currencies_with_fx_rate"},
    }
    assert REFERENCE_SETS["iso_4217_currencies"].values() == sorted(r["code"] for r in _seed("currencies.csv"))
    assert REFERENCE_SETS["currencies_with_fx_rate"].values() == ["EUR", "GBP", "USD"]


# ---------------------------------------------------------------- the gate's message


@pytest.fixture
def orders(con):
    con.execute("create schema raw")
    con.execute(
        """create table raw.orders as select * from (values
            ('o1', 'GBP', 'orders_a.csv', 1), ('o2', 'BRL', 'orders_a.csv', 2),
            ('o3', 'EURO', 'orders_b.csv', 1), ('o4', 'EURO', 'orders_c.csv', 1),
            ('o5', 'EURO', 'orders_c.csv', 2), ('o6', 'XX', 'orders_c.csv', 3)
        ) as t(order_id, currency, _source_file, _source_row)"""
    )
    return con


def _currency_suite(tmp_path, reference: str):
    path = tmp_path / "suite.json"
    path.write_text(
        json.dumps(
            {
                "name": "currency_suite",
                "meta": {"table": "raw.orders"},
                "expectations": [
                    {
                        "type": "expect_column_values_to_be_in_set",
                        "kwargs": {"column": "currency", "value_set": {"$PARAMETER": reference}},
                    }
                ],
            }
        )
    )
    return path


def test_a_non_iso_currency_fails_the_gate_naming_each_value_its_files_and_the_iso_seed(tmp_path, orders):
    result = validate_table(
        orders,
        "raw.orders",
        _currency_suite(tmp_path, "iso_4217_currencies"),
        1000,
        parameters=gate_parameters(None, 0.5, "2000-01-01"),
    )
    assert not result.success
    [failed] = result.failed
    # BRL is an ISO code: the gate accepts it (its rate is dbt's check); EURO and XX are not
    assert sorted(failed["unexpected_sample"]) == ["EURO", "EURO", "EURO", "XX"]
    assert failed["fix"] == (
        "currency: 'EURO' (orders_b.csv, orders_c.csv: 3 rows), 'XX' (orders_c.csv: 1 row). "
        "They are not ISO 4217 codes (dbt_project/seeds/currencies.csv): correct the delivered files."
    )
    assert failed["fix"] in result.describe()
    # the seed's 178 codes are not copied into the check's metadata
    assert "iso_4217_currencies" not in result.parameters


def test_a_currency_without_a_rate_fails_the_marts_check_naming_fx_rates_csv(tmp_path, orders):
    orders.execute("delete from raw.orders where currency in ('EURO', 'XX')")
    result = validate_table(
        orders,
        "raw.orders",
        _currency_suite(tmp_path, "currencies_with_fx_rate"),
        1000,
        parameters=gate_parameters(None, 0.5, "2000-01-01"),
    )
    assert not result.success
    assert result.failed[0]["fix"] == (
        "currency: 'BRL' (orders_a.csv: 1 row). "
        "They have no rate in dbt_project/seeds/fx_rates.csv: add a row currency,valid_from,rate_to_base."
    )
    orders.execute("delete from raw.orders where currency = 'BRL'")
    passed = validate_table(
        orders,
        "raw.orders",
        _currency_suite(tmp_path, "currencies_with_fx_rate"),
        1000,
        parameters=gate_parameters(None, 0.5, "2000-01-01"),
    )
    assert passed.success and passed.failed == []


# ---------------------------------------------------------------- through the graph

ORDER_COLUMNS = ["order_id", "customer_id", "channel", "status", "currency", "ordered_at"]


def _write_orders(path, rows: list[list[str]]) -> None:
    path.write_text("\n".join(",".join(r) for r in [ORDER_COLUMNS, *rows]) + "\n")


def _staging_up_to(*models: str) -> list[dg.AssetKey]:
    from orchestration.dbt import model_key
    from orchestration.definitions import defs

    targets = [model_key(m) for m in models]
    return sorted(dg.AssetSelection.keys(*targets).upstream().resolve(defs.resolve_asset_graph()), key=str)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    use_data_dir(mp, tmp_path_factory.mktemp("currencies") / "data")
    settings = load_settings()
    generate(GenerateConfig(**SMALL), settings.landing_dir, settings.truth_dir)
    customer = pd.read_csv(settings.landing_dir / "customers" / "customers.csv", dtype=str)["customer_id"].iloc[0]
    yield settings, customer
    mp.undo()


def _staged(settings, order_ids: list[str]) -> dict[str, tuple]:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        rows = con.execute(
            "select order_id, currency, rate_to_base, invalid_reason from staging.stg_orders "
            "where order_id in (select unnest(?::varchar[]))",
            [order_ids],
        ).fetchall()
    return {r[0]: r[1:] for r in rows}


@pytest.mark.graph
def test_a_non_iso_code_is_quarantined_with_its_file_and_the_run_goes_on(shop):
    settings, customer = shop
    _write_orders(
        settings.landing_dir / "orders" / "orders_zz_euro.csv",
        [["CUR0001", customer, "web", "completed", "Euro", "2026-10-20T10:00:00Z"]],
    )
    result = run_job(_staging_up_to("quarantined_records"))
    assert result.success, [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    reason = 'currency "Euro" in orders_zz_euro.csv is not an ISO 4217 code (the accepted codes: dbt_project/seeds/currencies.csv)'
    assert _staged(settings, ["CUR0001"]) == {"CUR0001": ("EURO", None, reason)}
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        quarantined = con.execute(
            "select stage, reason, _source_file from quarantine.quarantined_records where record_id = 'CUR0001'"
        ).fetchall()
    assert quarantined == [("staging", reason, "orders_zz_euro.csv")]


@pytest.mark.graph
def test_an_iso_code_without_a_rate_stops_the_build_naming_code_day_file_and_the_seed_row_to_add(shop):
    settings, customer = shop
    _write_orders(
        settings.landing_dir / "orders" / "orders_zz_brl.csv",
        [
            ["CUR0002", customer, "web", "completed", "brl", "2026-10-21T23:30:00-03:00"],
            ["CUR0003", customer, "web", "completed", "EUR", "2026-10-21T10:00:00Z"],
        ],
    )
    result = run_job(_staging_up_to("fct_orders"))
    assert not result.success
    failed = {
        (e.asset_key.to_user_string(), e.check_name) for e in result.get_asset_check_evaluations() if not e.passed
    }
    assert failed == {("staging/stg_orders", "tessera_currency_has_a_rate_stg_orders_")}
    # 23:30 in Sao Paulo is the next day in UTC: the rate had to hold on the order's UTC day
    assert _staged(settings, ["CUR0002", "CUR0003"]) == {
        "CUR0002": (
            "BRL",
            None,
            "no exchange rate for BRL on 2026-10-22 in orders_zz_brl.csv: add a row "
            "BRL,<valid_from on or before 2026-10-22>,<value of 1 BRL in GBP> to dbt_project/seeds/fx_rates.csv",
        ),
        "CUR0003": ("EUR", 0.85, None),
    }
    # nothing downstream of the staged orders was built on the run that could not value them
    built = {e.asset_key for e in result.get_asset_materialization_events()}
    from orchestration.dbt import model_key

    assert model_key("fct_orders") not in built and model_key("int_order_lines") not in built
