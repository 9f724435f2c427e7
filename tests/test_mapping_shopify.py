"""The built-in Shopify mapping (config/mappings/shopify.yml) on tests/fixtures/shopify: a small
Dutch shop's orders, customers and products exports in Shopify's column layout. The expected
values are read from the fixture with the csv module, independently of the mapping."""

from __future__ import annotations

import csv
import hashlib
import shutil
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tessera.landing.mapping import REPORT_DIR, run_mapping
from tessera.landing.mapping_schema import MappingError, load_mapping
from tessera.landing.preflight import check_landing

REPO = Path(__file__).resolve().parent.parent
MAPPING = REPO / "config" / "mappings" / "shopify.yml"
FIXTURE = REPO / "tests" / "fixtures" / "shopify"
ORDERS_CSV = "orders_export_1.csv"
CUSTOMERS_CSV = "customers_export.csv"


def rows(landing: Path, source: str) -> list[dict]:
    return pq.read_table(landing / source / f"{source}.parquet").to_pylist()


def by(items: list[dict], key: str) -> dict[str, dict]:
    return {r[key]: r for r in items}


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def key(kind: str, value: str) -> str:
    return "shopify-" + hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:20]


def map_export(export: Path, landing: Path):
    return run_mapping(load_mapping(MAPPING), export, landing)


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    landing = tmp_path_factory.mktemp("shopify") / "landing"
    report = map_export(FIXTURE, landing)
    return report, landing


@pytest.fixture(scope="module")
def classified(mapped):
    _, landing = mapped
    return pq.read_table(landing / REPORT_DIR / "classified.parquet").to_pylist()


def test_every_export_is_read_and_the_landing_passes_the_preflight(mapped):
    report, landing = mapped
    assert {n: i["records"] for n, i in report.inputs.items()} == {
        "orders_export": 21,
        "customers_export": 8,
        "products_export": 13,
    }
    assert report.problems == []
    checked = check_landing(landing)
    assert checked.errors == []
    assert checked.findings == []
    assert checked.rows == {
        "customers": 9,
        "products": 11,
        "orders": 8,
        "order_items": 13,
        "pos_transactions": 5,
        "privacy": 11,
    }


def test_orders_get_their_status_from_financial_status_and_cancelled_at(mapped, classified):
    _, landing = mapped
    status = {o["order_id"]: o["status"] for o in rows(landing, "orders")}
    assert status == {
        "#1001": "completed",  # paid
        "#1002": "completed",  # paid, with a discount code
        "#1003": "returned",  # refunded
        "#1004": "cancelled",  # voided and Cancelled at
        "#1006": "completed",  # partially_refunded: still a sale
        "#1009": "completed",  # paid, buyer known by phone only
        "#1010": "completed",  # paid, buyer not in the customers export
        "#1012": "completed",  # a draft order (Source shopify_draft_order) is an online order
    }
    assert {o["channel"] for o in rows(landing, "orders")} == {"web"}
    assert {o["currency"] for o in rows(landing, "orders")} == {"EUR"}
    # pending (#1005, first line at data row 8) and authorized (#1011, row 19) are left out, recorded
    unpaid = [(c["rule"].split(":")[0], c["row"]) for c in classified if c["node"] == "orders"]
    assert unpaid == [("not_paid", 8), ("not_paid", 19)]
    assert all("no pending status" in c["rule"] for c in classified if c["node"] == "orders")


def test_ordered_at_keeps_the_instant_of_the_exports_offset(mapped):
    _, landing = mapped
    orders = by(rows(landing, "orders"), "order_id")
    assert orders["#1001"]["ordered_at"] == "2024-03-05T13:02:11+00:00"  # 14:02:11 +0100
    assert orders["#1012"]["ordered_at"] == "2024-04-02T07:15:00+00:00"  # 09:15:00 +0200 (summer time)


def test_every_line_of_the_export_lands_once_or_is_classified_and_amounts_add_up(mapped, classified):
    """Each data row of the orders export is an order line, a store receipt line or a classified
    row; per order, the lines' quantity x price equals Shopify's Subtotal + Discount Amount."""
    _, landing = mapped
    export = read_csv(FIXTURE / ORDERS_CSV)
    line_no, expected, heads = {}, {}, {}
    for i, r in enumerate(export, 1):
        line_no[r["Name"]] = line_no.get(r["Name"], 0) + 1
        expected[i] = (r["Name"], f"{r['Name']}-{line_no[r['Name']]}", int(r["Lineitem quantity"]), r["Lineitem price"])
        if r["Financial Status"]:
            heads[r["Name"]] = Decimal(r["Subtotal"]) + Decimal(r["Discount Amount"])
    items = by(rows(landing, "order_items"), "order_item_id")
    receipt_lines = by(rows(landing, "pos_transactions"), "transaction_line_id")
    left_out = {c["row"]: c["rule"] for c in classified if c["node"] in ("order_items", "pos_transactions")}
    amounts: dict[str, Decimal] = {}
    for row, (order, line_id, quantity, price) in expected.items():
        landed = [x for x in (items.get(line_id), receipt_lines.get(line_id)) if x is not None]
        assert len(landed) + (row in left_out) == 1, f"data row {row} ({line_id})"
        if landed:
            assert int(landed[0]["quantity"]) == quantity
            assert Decimal(landed[0]["unit_price"]) == Decimal(price)
        amounts[order] = amounts.get(order, Decimal(0)) + quantity * Decimal(price)
    assert amounts == heads
    assert len(items) == 13
    assert [i for i in items if i.startswith("#1002-")] == ["#1002-1", "#1002-2", "#1002-3"]
    # what landed of an order with a custom item: the gift card line, not the gift wrapping
    assert Decimal(items["#1009-1"]["unit_price"]) == Decimal("50.00") and "#1009-2" not in items
    assert left_out == {
        8: "not_paid: a line of an order not paid in full yet (see orders)",
        9: "not_paid: a line of an order not paid in full yet (see orders)",
        16: "no_product: no SKU, and no variant of the products export has its name "
        "(a custom item, a tip, a deleted or renamed product)",
        19: "not_paid: a line of an order not paid in full yet (see orders)",
    }


def test_a_line_without_sku_takes_the_product_of_the_variant_of_its_name(mapped):
    _, landing = mapped
    items = by(rows(landing, "order_items"), "order_item_id")
    products = by(rows(landing, "products"), "product_id")
    assert items["#1002-2"]["product_id"] == "name:Ceramic Mug - Green"
    assert products["name:Ceramic Mug - Green"]["name"] == "Ceramic Mug"
    # every landed line names a product of the catalogue
    lines = rows(landing, "order_items") + rows(landing, "pos_transactions")
    assert {line["product_id"] for line in lines} <= set(products)


def test_pos_sales_are_store_receipts_and_a_refunded_one_gets_its_return_line(mapped):
    _, landing = mapped
    receipts = by(rows(landing, "pos_transactions"), "transaction_line_id")
    assert sorted(receipts) == ["#1007-1", "#1007-2", "#1008-1", "#1013-1", "#1013-1-refund"]
    assert {r["store_id"] for r in receipts.values()} == {"Amsterdam Store"}
    assert receipts["#1007-1"]["email"] == "lisa.mulder@example.nl"
    assert receipts["#1008-1"]["email"] is None and receipts["#1008-1"]["phone"] is None  # a walk-in
    sale, refund = receipts["#1013-1"], receipts["#1013-1-refund"]
    assert (sale["quantity"], refund["quantity"]) == ("1", "-1")
    assert sale["unit_price"] == refund["unit_price"] and sale["receipt_id"] == refund["receipt_id"] == "#1013"
    assert sale["transacted_at"] == "2024-04-03T15:48:26+00:00"
    orders = {o["order_id"] for o in rows(landing, "orders")}
    assert not orders & {"#1007", "#1008", "#1013"}


def test_customers_are_keyed_by_email_else_phone_so_their_orders_join(mapped):
    _, landing = mapped
    customers = by(rows(landing, "customers"), "customer_id")
    export = read_csv(FIXTURE / CUSTOMERS_CSV)
    assert len(customers) == len(export) + 1  # + a buyer the customers export does not have
    jan = customers[key("email", "jan.jansen@example.nl")]
    assert (jan["first_name"], jan["last_name"], jan["city"], jan["postcode"], jan["country"]) == (
        "Jan",
        "Jansen",
        "Amsterdam",
        "1015 CJ",
        "NL",
    )
    assert jan["phone"] == "+31612345678"  # the leading apostrophe of the export is gone
    assert jan["signup_at"] == "2024-03-05T13:02:11+00:00"  # the first order stands for sign-up
    orders = by(rows(landing, "orders"), "order_id")
    # "Jan.Jansen@Example.nl" on #1003 is the same customer
    assert orders["#1001"]["customer_id"] == orders["#1003"]["customer_id"] == jan["customer_id"]
    fatima = customers[key("phone", "31687654321")]  # no email: keyed by her phone
    assert fatima["email"] is None and orders["#1009"]["customer_id"] == fatima["customer_id"]
    bram = customers["shopify-id-7012345678907"]  # neither email nor phone: the Customer ID
    assert (bram["first_name"], bram["city"]) == ("Bram", "Leiden")
    noor = customers[key("email", "noor.dekker@example.nl")]  # no orders: no sign-up time
    assert noor["signup_at"] is None
    assert {o["customer_id"] for o in orders.values()} <= set(customers)


def test_a_buyer_missing_from_the_customers_export_gets_a_profile_from_the_order(mapped):
    _, landing = mapped
    daan = by(rows(landing, "customers"), "customer_id")[key("email", "daan.smit@example.be")]
    assert {k: daan[k] for k in ("first_name", "last_name", "address", "city", "postcode", "country", "phone")} == {
        "first_name": "Daan",
        "last_name": "Smit",
        "address": "Meir 12",
        "city": "Antwerpen",
        "postcode": "2000",
        "country": "BE",
        "phone": "+32470123456",
    }
    assert daan["updated_at"] == daan["signup_at"] == "2024-03-28T09:10:10+00:00"


def test_products_are_one_per_variant_with_the_handles_title_and_image_rows_are_classified(mapped, classified):
    _, landing = mapped
    products = by(rows(landing, "products"), "product_id")
    assert sorted(products) == sorted(
        [
            "TEE-BLU-M",
            "TEE-BLU-L",
            "TEE-BLK-M",
            "TOTE-NAT",
            "MUG-WHT",
            "name:Ceramic Mug - Green",
            "GIFT-25",
            "GIFT-50",
            "BEANIE-GRY",
            "SHIRT-LIN-M",
            "SHIRT-LIN-L",
        ]
    )
    # the title is on the handle's first row only: every variant carries it
    assert {products[p]["name"] for p in ("TEE-BLU-M", "TEE-BLU-L", "TEE-BLK-M")} == {"Classic Tee"}
    tee = products["TEE-BLK-M"]
    assert (tee["category"], tee["brand"], Decimal(tee["price"]), tee["currency"]) == (
        "T-Shirts",
        "Noorderlicht",
        Decimal("27.00"),
        "EUR",
    )
    assert products["GIFT-25"]["category"] == "Gift Card"  # no Product Category: the Type
    assert {p: products[p]["product_type"] for p in ("GIFT-25", "GIFT-50", "TOTE-NAT")} == {
        "GIFT-25": "voucher",
        "GIFT-50": "voucher",
        "TOTE-NAT": "merchandise",
    }
    active = {p: products[p]["is_active"] for p in ("TOTE-NAT", "BEANIE-GRY", "SHIRT-LIN-L")}
    assert active == {"TOTE-NAT": "true", "BEANIE-GRY": "false", "SHIRT-LIN-L": "false"}  # archived, draft
    images = [(c["rule"].split(":")[0], c["file"], c["row"]) for c in classified if c["node"] == "products"]
    assert images == [("image_row", "products_export_1.csv", 4), ("image_row", "products_export_1.csv", 8)]


def test_checkout_marketing_consent_becomes_a_dated_email_marketing_record(mapped):
    _, landing = mapped
    privacy = by(rows(landing, "privacy"), "request_id")
    export = {r["Name"]: r for r in read_csv(FIXTURE / ORDERS_CSV) if r["Financial Status"]}
    with_email = {n for n, r in export.items() if r["Email"]}
    assert {p.removeprefix("shopify-order-").removesuffix("-accepts-marketing") for p in privacy} == with_email
    for request_id, p in privacy.items():
        order = export[request_id.removeprefix("shopify-order-").removesuffix("-accepts-marketing")]
        assert p["granted"] == {"yes": "true", "no": "false"}[order["Accepts Marketing"]]
        assert (p["request_type"], p["channel"], p["purpose"]) == ("consent", "email", "marketing")
        assert p["customer_id"] == key("email", order["Email"].lower())
    assert privacy["shopify-order-#1002-accepts-marketing"]["requested_at"] == "2024-03-06T08:41:27+00:00"


def _copy_fixture(tmp_path: Path) -> Path:
    export = tmp_path / "export"
    shutil.copytree(FIXTURE, export)
    return export


def _rewrite(path: Path, change) -> None:
    with path.open(newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    table = change(table)
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(table)


def test_the_older_customers_layout_reads_the_same_and_a_profile_without_any_key_is_classified(tmp_path, mapped):
    export = _copy_fixture(tmp_path)
    old = {
        "Default Address Company": "Company",
        "Default Address Address1": "Address1",
        "Default Address Address2": "Address2",
        "Default Address City": "City",
        "Default Address Province Code": "Province Code",
        "Default Address Country Code": "Country Code",
        "Default Address Zip": "Zip",
        "Accepts Email Marketing": "Accepts Marketing",
    }

    def older(table):
        header = table[0]
        drop = {header.index(c) for c in ("Customer ID", "Default Address Phone", "Accepts SMS Marketing")}
        return [[old.get(v, v) if n == 0 else v for i, v in enumerate(r) if i not in drop] for n, r in enumerate(table)]

    _rewrite(export / CUSTOMERS_CSV, older)
    landing = tmp_path / "landing"
    report = map_export(export, landing)
    assert report.classified["customers"] == {"no_key": 1}
    now = by(rows(landing, "customers"), "customer_id")
    before = by(rows(mapped[1], "customers"), "customer_id")
    assert set(now) == set(before) - {"shopify-id-7012345678907"}
    assert now[key("email", "jan.jansen@example.nl")]["city"] == "Amsterdam"


def test_order_columns_on_every_line_or_on_the_first_only_map_alike(tmp_path, mapped):
    export = _copy_fixture(tmp_path)

    def first_line_only(table):
        header, seen = table[0], set()
        for r in table[1:]:
            if r[0] in seen:
                for column in ("Email", "Created at"):
                    r[header.index(column)] = ""
            seen.add(r[0])
        return table

    _rewrite(export / ORDERS_CSV, first_line_only)
    landing = tmp_path / "landing"
    map_export(export, landing)
    for source in ("orders", "order_items", "pos_transactions", "customers", "privacy"):
        assert rows(landing, source) == rows(mapped[1], source), source


def test_an_order_in_two_files_stops_the_mapping_naming_the_order(tmp_path):
    export = _copy_fixture(tmp_path)
    lines = (export / ORDERS_CSV).read_text(encoding="utf-8").splitlines(keepends=True)
    (export / "orders_export_2.csv").write_text(lines[0] + lines[1], encoding="utf-8")  # #1001 again
    said = r"orders_export_1.csv row 1: column name has 3 value\(s\) in more than one file.*e\.g\. '#1001'"
    with pytest.raises(MappingError, match=said):
        map_export(export, tmp_path / "landing")
    assert not (tmp_path / "landing").exists()


def test_a_financial_status_the_mapping_does_not_know_is_reported(tmp_path):
    export = _copy_fixture(tmp_path)

    def unknown(table):
        table[1][table[0].index("Financial Status")] = "on_hold"
        return table

    _rewrite(export / ORDERS_CSV, unknown)
    report = map_export(export, tmp_path / "landing")
    assert report.problems == ["orders.status: value(s) not in the value map, delivered as they came: 'on_hold' (1)"]
