"""The built-in Complete Journey mapping (config/mappings/complete_journey.yml) on small hand-made
exports, and on the real one in ../shared/data when it is there."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tessera.landing.mapping as mapping_module
from tessera.landing.mapping_schema import MappingError


def map_complete_journey(export: Path, landing: Path) -> dict[str, int]:
    report = mapping_module.map_export("complete_journey", export, landing)
    return {name: found["rows"] for name, found in report.outputs.items()}


REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TESSERA_SHARED_DATA", REPO.parent / "shared" / "data"))

TX = {
    "household_id": [1, 1, 1, 2, 2, 3],
    "store_id": [10, 10, 10, 20, 20, 30],
    "basket_id": [100.0, 100.0, 100.0, 200.0, 200.0, 300.0],
    "product_id": [5001, 5002, 9001, 5001, 7001, 5003],
    "quantity": [2.0, 3.0, 10514.0, 1.0, 1.0, 0.0],
    "sales_value": [3.00, 5.00, 24.91, 1.50, 25.00, 0.0],
    "retail_disc": [1.00, 0.0, 0.0, 0.20, 0.0, 0.0],
    "coupon_disc": [0.0] * 6,
    "coupon_match_disc": [0.0, 0.25, 0.0, 0.0, 0.0, 0.0],
    "week": [1, 1, 1, 2, 2, 3],
    "transaction_timestamp": [
        "2017-01-02 10:00:00+00:00",
        "2017-01-02 10:00:00+00:00",
        "2017-01-02 10:00:00+00:00",
        "2017-06-30 18:30:05+00:00",
        "2017-06-30 18:30:05+00:00",
        "2017-12-31 23:59:59+00:00",
    ],
}
PRODUCTS = {
    "product_id": [5001.0, 5002.0, 5003.0, 9001.0, 7001.0, 8888.0],
    "manufacturer_id": [1, 1, 1, 2, 3, 4],
    "department": ["GROCERY", "PRODUCE", "GROCERY", "FUEL", "MISCELLANEOUS", "GROCERY"],
    "brand": ["National", "Private", "National", "National", "National", "Private"],
    "product_category": ["SOUP", None, "BREAD", "COUPON/MISC ITEMS", "COUPON/MISC ITEMS", "SOUP"],
    "product_type": [
        "RAMEN NOODLES",
        "ONIONS OTHER",
        "PREMIUM BREAD",
        "GASOLINE-REG UNLEADED",
        "ELECTRONIC GIFT CARDS ACTIVATI",
        "CONDENSED SOUP",
    ],
    "package_size": ["3 OZ", None, "20 OZ", None, None, "10 OZ"],
}
DEMOGRAPHICS = {"household_id": [1, 4], "age": ["45-54", "65+"], "income": ["50-74K", "35-49K"]}


def write_export(
    folder: Path, tx=None, products=None, demographics=None, tx_name="transactions_sample.parquet"
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(tx or TX), folder / tx_name)
    pq.write_table(pa.table(products or PRODUCTS), folder / "products.parquet")
    pq.write_table(pa.table(demographics or DEMOGRAPHICS), folder / "demographics.parquet")
    return folder


def rows(landing: Path, source: str) -> list[dict]:
    return pq.read_table(landing / source / f"{source}.parquet").to_pylist()


@pytest.fixture
def mapped(tmp_path):
    export = write_export(tmp_path / "export")
    landing = tmp_path / "landing"
    counts = map_complete_journey(export, landing)
    return counts, landing


def test_every_household_becomes_a_profile_with_its_loyalty_card_and_no_invented_contact(mapped):
    counts, landing = mapped
    customers = {r["customer_id"]: r for r in rows(landing, "customers")}
    # households 1, 2, 3 bought; household 4 is only in demographics
    assert sorted(customers) == ["CJ1", "CJ2", "CJ3", "CJ4"]
    assert counts["customers"] == 4
    assert customers["CJ2"]["loyalty_card"] == "CARD2"
    assert {r["country"] for r in customers.values()} == {"US"}
    for column in ("first_name", "last_name", "email", "phone", "birth_date", "gender", "signup_at", "updated_at"):
        assert {r[column] for r in customers.values()} == {None}, column


def test_baskets_become_store_receipts_identified_only_by_the_household_card(mapped):
    _, landing = mapped
    lines = rows(landing, "pos_transactions")
    assert {r["receipt_id"] for r in lines} == {"100", "200", "300"}
    assert {(r["receipt_id"], r["loyalty_card"]) for r in lines} == {
        ("100", "CARD1"),
        ("200", "CARD2"),
        ("300", "CARD3"),
    }
    assert {r["email"] for r in lines} == {None} and {r["phone"] for r in lines} == {None}
    assert {r["currency"] for r in lines} == {"USD"}
    assert {r["store_id"] for r in lines if r["receipt_id"] == "200"} == {"20"}
    assert [r["transacted_at"] for r in lines if r["receipt_id"] == "200"] == ["2017-06-30T18:30:05+00:00"] * 2


def test_a_line_whose_amount_does_not_split_into_whole_cents_becomes_two_lines_with_the_same_total(mapped):
    _, landing = mapped
    by_id = {r["transaction_line_id"]: r for r in rows(landing, "pos_transactions")}
    # 3 units for $5.00: 2 x 1.66 + 1 x 1.68
    assert (by_id["100-2"]["quantity"], by_id["100-2"]["unit_price"]) == ("2", "1.66")
    assert (by_id["100-2-2"]["quantity"], by_id["100-2-2"]["unit_price"]) == ("1", "1.68")
    assert by_id["100-2-2"]["product_id"] == "5002"
    # 2 units for $3.00 divide evenly: one line
    assert (by_id["100-1"]["quantity"], by_id["100-1"]["unit_price"]) == ("2", "1.50")
    assert "100-1-2" not in by_id


def test_a_fuel_quantity_that_is_not_units_becomes_one_unit_at_the_line_amount(mapped):
    _, landing = mapped
    by_id = {r["transaction_line_id"]: r for r in rows(landing, "pos_transactions")}
    assert (by_id["100-3"]["quantity"], by_id["100-3"]["unit_price"]) == ("1", "24.91")


def test_a_zero_quantity_line_is_written_as_delivered_for_staging_to_quarantine(mapped):
    _, landing = mapped
    by_id = {r["transaction_line_id"]: r for r in rows(landing, "pos_transactions")}
    assert (by_id["300-1"]["quantity"], by_id["300-1"]["unit_price"]) == ("0", "0.00")


def test_landing_lines_add_up_to_the_source_amounts_and_units(mapped):
    _, landing = mapped
    lines = rows(landing, "pos_transactions")
    total = sum(Decimal(r["quantity"]) * Decimal(r["unit_price"]) for r in lines)
    assert total == Decimal("3.00") + Decimal("5.00") + Decimal("24.91") + Decimal("1.50") + Decimal("25.00")
    # units: the fuel line counts one unit, every other line its own quantity
    assert sum(int(r["quantity"]) for r in lines) == 2 + 3 + 1 + 1 + 1 + 0


def test_products_carry_shelf_price_category_and_what_they_sell(mapped):
    _, landing = mapped
    products = {r["product_id"]: r for r in rows(landing, "products")}
    # only products that sold; 8888 never did
    assert sorted(products) == ["5001", "5002", "5003", "7001", "9001"]
    # shelf price = (sales_value + retail_disc + coupon_match_disc) / quantity, median over lines:
    # (3.00 + 1.00) / 2 = 2.00 and (1.50 + 0.20) / 1 = 1.70 -> 1.85
    assert products["5001"]["price"] == "1.85"
    assert products["5002"]["price"] == "1.75"  # (5.00 + 0.25) / 3
    assert products["5003"]["price"] == "0.00"  # only a zero line: never sold at a positive price
    assert products["5001"]["name"] == "RAMEN NOODLES 3 OZ"
    assert products["5001"]["category"] == "SOUP"
    assert products["5002"]["category"] == "PRODUCE"  # no product_category: the department
    assert products["5002"]["brand"] == "Private"
    assert {k: v["product_type"] for k, v in products.items()} == {
        "5001": "merchandise",
        "5002": "merchandise",
        "5003": "merchandise",
        "7001": "voucher",
        "9001": "service",
    }
    assert products["5001"]["created_at"] == "2017-01-02T10:00:00+00:00"
    # active: sold in the last 180 days of the export (which ends 2017-12-31)
    # (from 2017-07-04): 5003 sold on 2017-12-31, 5001 last on 2017-06-30
    assert (products["5001"]["is_active"], products["5003"]["is_active"]) == ("false", "true")


def test_product_types_are_the_contracts(tmp_path):
    from tessera.landing.contract import PRODUCT_TYPES

    cases = [
        ("FUEL", "COUPON/MISC ITEMS", "GASOLINE-REG UNLEADED", "service"),
        ("MISCELLANEOUS", "COUPON/MISC ITEMS", "MASTERCARD GIFT CARD", "voucher"),
        ("COUPON", "COUPONS/STORE & MFG", "COUPONS/STORE & MFG", "adjustment"),
        ("GROCERY", "COUPON/MISC ITEMS", "MISC SALES TRANS", "adjustment"),
        ("CNTRL/STORE SUP", "COUPON/MISC ITEMS", "CENTRAL SUPPLIES", "adjustment"),
        ("POSTAL CENTER", None, None, "service"),
        ("CHARITABLE CONT", None, None, "fee"),
        ("GROCERY", "SOUP", "RAMEN NOODLES", "merchandise"),
        (None, None, None, "merchandise"),
    ]
    n = len(cases)
    products = {
        "product_id": [float(i) for i in range(1, n + 1)],
        "manufacturer_id": [1] * n,
        "department": [c[0] for c in cases],
        "brand": ["National"] * n,
        "product_category": [c[1] for c in cases],
        "product_type": [c[2] for c in cases],
        "package_size": [None] * n,
    }
    tx = {k: [v[0]] * n for k, v in TX.items()}
    tx["product_id"] = list(range(1, n + 1))
    tx["basket_id"] = [float(100 + i) for i in range(n)]
    landing = tmp_path / "landing"
    map_complete_journey(write_export(tmp_path / "export", tx=tx, products=products), landing)
    types = {r["product_id"]: r["product_type"] for r in rows(landing, "products")}
    assert [types[str(i)] for i in range(1, n + 1)] == [c[3] for c in cases]
    assert set(types.values()) <= set(PRODUCT_TYPES)


@pytest.mark.parametrize(
    ("file_name", "column"),
    [
        ("transactions_sample.parquet", "sales_value"),
        ("transactions_sample.parquet", "basket_id"),
        ("transactions_sample.parquet", "transaction_timestamp"),
        ("products.parquet", "department"),
        ("demographics.parquet", "household_id"),
    ],
)
def test_a_missing_column_fails_naming_the_file_and_the_column(tmp_path, file_name, column):
    tables = {
        "transactions_sample.parquet": dict(TX),
        "products.parquet": dict(PRODUCTS),
        "demographics.parquet": dict(DEMOGRAPHICS),
    }
    del tables[file_name][column]
    export = write_export(
        tmp_path / "export",
        tx=tables["transactions_sample.parquet"],
        products=tables["products.parquet"],
        demographics=tables["demographics.parquet"],
    )
    with pytest.raises(MappingError, match=rf"no column '{column}' in {file_name}"):
        map_complete_journey(export, tmp_path / "landing")


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("sales_value", 1.005, r"column sales_value has 1 value\(s\) with fractions of a cent, e\.g\. '1\.005'"),
        ("quantity", 1.5, r"column quantity has 1 value\(s\) that are not whole units, e\.g\. '1\.5'"),
        ("quantity", -2.0, r"column quantity has 1 value\(s\) below zero"),
    ],
)
def test_a_value_without_a_mapping_rule_fails_naming_file_column_and_value(tmp_path, column, value, message):
    tx = {k: list(v) for k, v in TX.items()}
    tx[column][0] = value
    export = write_export(tmp_path / "export", tx=tx)
    with pytest.raises(MappingError, match=r"transactions_sample\.parquet row 1: " + message):
        map_complete_journey(export, tmp_path / "landing")


def test_a_refund_becomes_a_return_line_with_negative_quantity(tmp_path):
    tx = {k: list(v) for k, v in TX.items()}
    tx["sales_value"][3] = -1.50
    export = write_export(tmp_path / "export", tx=tx)
    map_complete_journey(export, tmp_path / "landing")
    by_id = {r["transaction_line_id"]: r for r in rows(tmp_path / "landing", "pos_transactions")}
    assert (by_id["200-1"]["quantity"], by_id["200-1"]["unit_price"]) == ("-1", "1.50")


def test_both_the_full_and_the_sample_transactions_file_is_an_error(tmp_path):
    export = write_export(tmp_path / "export")
    pq.write_table(pa.table(TX), export / "transactions.parquet")
    with pytest.raises(MappingError, match="transactions.parquet and transactions_sample.parquet all match"):
        map_complete_journey(export, tmp_path / "landing")


def test_the_full_transactions_table_is_read_under_its_own_name(tmp_path):
    export = write_export(tmp_path / "export", tx_name="transactions.parquet")
    counts = map_complete_journey(export, tmp_path / "landing")
    assert counts["pos_transactions"] == 7  # six lines, one of them split


def test_a_failed_mapping_leaves_the_previous_landing_folder_untouched(tmp_path, monkeypatch):
    # the old Online Retail mapping removed the landing folder first: a failure left nothing
    export = write_export(tmp_path / "export")
    landing = tmp_path / "landing"
    map_complete_journey(export, landing)
    before = {p.relative_to(landing): p.read_bytes() for p in landing.rglob("*") if p.is_file()}

    class FailingJson:
        @staticmethod
        def dumps(*args, **kwargs):
            raise OSError("disk full")

    # the report is written last, after every landing file: failing there fails a nearly complete write
    monkeypatch.setattr(mapping_module, "json", FailingJson)
    with pytest.raises(OSError, match="disk full"):
        map_complete_journey(export, landing)
    after = {p.relative_to(landing): p.read_bytes() for p in landing.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "landing"]  # no half-written folder left


def test_a_new_mapping_replaces_the_whole_landing_folder(tmp_path):
    landing = tmp_path / "landing"
    (landing / "events").mkdir(parents=True)
    (landing / "events" / "old.csv").write_text("event_id\n1\n")
    map_complete_journey(write_export(tmp_path / "export"), landing)
    assert sorted(p.name for p in landing.iterdir()) == ["_mapping", "customers", "pos_transactions", "products"]


def test_the_cli_writes_into_the_landing_folder_and_names_a_missing_column(tmp_path, monkeypatch, capsys):
    from tessera.cli import main

    monkeypatch.setenv("TESSERA_LANDING_DIR", str(tmp_path / "landing"))
    assert main(["complete-journey", "--source-dir", str(write_export(tmp_path / "export"))]) == 0
    assert "pos_transactions            7 rows" in capsys.readouterr().out
    assert (tmp_path / "landing" / "customers" / "customers.parquet").exists()

    broken = dict(PRODUCTS)
    del broken["brand"]
    assert main(["complete-journey", "--source-dir", str(write_export(tmp_path / "broken", products=broken))]) == 2
    assert "no column 'brand' in products.parquet" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED / "complete_journey").is_dir(), reason=f"no Complete Journey export in {SHARED}")
def test_the_real_export_maps_every_line_and_every_cent(tmp_path):
    source = SHARED / "complete_journey"
    counts = map_complete_journey(source, tmp_path / "landing")
    con = duckdb.connect()
    src = con.execute(
        "select count(*), count(distinct household_id), cast(sum(round(sales_value * 100)) as bigint) "
        "from read_parquet(?)",
        [str(source / "transactions_sample.parquet")],
    ).fetchone()
    landed = con.execute(
        "select count(distinct regexp_extract(transaction_line_id, '^[0-9]+-[0-9]+')), "
        "count(distinct loyalty_card), cast(sum(cast(quantity as bigint) * cast(unit_price as decimal(18, 2)) * 100) as bigint) "
        "from read_parquet(?)",
        [str(tmp_path / "landing" / "pos_transactions" / "pos_transactions.parquet")],
    ).fetchone()
    assert landed == src  # every source line once, every household's card, every cent
    assert (
        counts["customers"]
        == con.execute(
            "select count(*) from (select household_id from read_parquet(?) union select household_id from read_parquet(?))",
            [str(source / "transactions_sample.parquet"), str(source / "demographics.parquet")],
        ).fetchone()[0]
    )
