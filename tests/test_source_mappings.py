"""Declarative source mappings (tessera/landing/mapping_schema.py, mapping.py), the built-in ones
on the shared real exports, and the preflight (tessera/landing/preflight.py)."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from tessera.landing.mapping import map_export, run_mapping
from tessera.landing.mapping_schema import MappingError, load_mapping
from tessera.landing.preflight import check_landing

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TESSERA_SHARED_DATA", REPO.parent / "shared" / "data"))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def rows(landing: Path, source: str) -> list[dict]:
    return pq.read_table(landing / source / f"{source}.parquet").to_pylist()


ORDERS_CSV = """\
order_no;shopper;placed;total;state;sku;qty;person
A-1;c1;31/01/2024 23:30;1.234,50;entregue;P1;2;u1
A-1;c1;31/01/2024 23:30;1.234,50;entregue;P2;1;u1
A-2;c2;01/02/2024 09:00;10,00;cancelado;P1;1;u1
A-3;c3;not a date;5,00;em trânsito;TEST-9;1;u2
"""

MAPPING = """\
name: marketplace
description: an orders export that carries customers, orders and lines
inputs:
  export:
    files: "*.csv"
    csv: {delimiter: ";"}
    timezone: America/Sao_Paulo
    currency: BRL
    columns:
      order_no: order_no
      shopper: shopper
      placed: {from: placed, type: timestamp, format: "%d/%m/%Y %H:%M"}
      total: {from: total, type: decimal, decimal_comma: true}
      state: state
      sku: sku
      qty: {from: qty, type: integer}
      person: person
outputs:
  customers:
    from: export
    group_by: [customer_id]
    columns:
      customer_id: shopper
      country: {value: BR}
  identifiers:
    from: export
    group_by: [customer_id]
    columns:
      customer_id: shopper
      id_type: {value: person_id}
      id_value: any_value(person)
  orders:
    from: export
    group_by: [order_id]
    columns:
      order_id: order_no
      customer_id: any_value(shopper)
      status:
        expr: any_value(state)
        map: {entregue: completed, cancelado: cancelled}
      ordered_at: any_value(placed)
  order_items:
    from: export
    classify:
      - {name: test_product, when: "starts_with(sku, 'TEST-')", reason: "'a test product the shop placed itself'"}
    columns:
      order_item_id: order_no || '-' || row_number() over (partition by order_no order by _row)
      order_id: order_no
      product_id: sku
      quantity: qty
      unit_price: total
"""


@pytest.fixture
def marketplace(tmp_path):
    mapping = load_mapping(write(tmp_path / "marketplace.yml", MAPPING))
    write(tmp_path / "export" / "orders.csv", ORDERS_CSV)
    landing = tmp_path / "landing"
    report = run_mapping(mapping, tmp_path / "export", landing)
    return report, landing


def test_one_export_delivers_customers_orders_and_lines(marketplace):
    report, landing = marketplace
    assert {r["customer_id"] for r in rows(landing, "customers")} == {"c1", "c2", "c3"}
    assert {r["country"] for r in rows(landing, "customers")} == {"BR"}
    orders = {r["order_id"]: r for r in rows(landing, "orders")}
    assert sorted(orders) == ["A-1", "A-2", "A-3"]
    assert orders["A-1"]["customer_id"] == "c1"
    assert report.outputs["order_items"] == {"rows": 3}


def test_day_first_local_times_are_written_in_utc_and_a_value_that_does_not_parse_is_recorded(marketplace):
    report, landing = marketplace
    orders = {r["order_id"]: r for r in rows(landing, "orders")}
    # 23:30 in São Paulo (UTC-3) is 02:30 UTC the next day
    assert orders["A-1"]["ordered_at"] == "2024-02-01T02:30:00+00:00"
    # an aggregate of it has no delivered text to fall back on: empty (staging quarantines the
    # order), the value itself kept in _mapping/unparsed.parquet
    assert orders["A-3"]["ordered_at"] is None
    assert report.unparsed["export.placed"]["count"] == 1
    assert report.unparsed["export.placed"]["examples"] == [{"file": "orders.csv", "row": 4, "value": "not a date"}]
    unparsed = pq.read_table(landing / "_mapping" / "unparsed.parquet").to_pylist()
    assert unparsed == [
        {"input": "export", "input_column": "placed", "file": "orders.csv", "row": 4, "value": "not a date"}
    ]


def test_decimal_commas_constants_and_the_declared_currency(marketplace):
    _, landing = marketplace
    items = {r["order_item_id"]: r for r in rows(landing, "order_items")}
    assert items["A-1-1"]["unit_price"] == "1234.5" and items["A-1-1"]["quantity"] == "2"
    assert {r["currency"] for r in rows(landing, "orders")} == {"BRL"}


def test_a_value_map_maps_known_values_and_reports_the_others_delivered_as_they_came(marketplace):
    report, landing = marketplace
    orders = {r["order_id"]: r["status"] for r in rows(landing, "orders")}
    assert orders == {"A-1": "completed", "A-2": "cancelled", "A-3": "em trânsito"}
    assert report.unmapped == {"orders.status": {"em trânsito": 1}}
    assert any("em trânsito" in p for p in report.problems)


def test_classified_rows_are_left_out_and_recorded_with_their_reason(marketplace):
    report, landing = marketplace
    assert "TEST-9" not in {r["product_id"] for r in rows(landing, "order_items")}
    assert report.classified["order_items"] == {"test_product": 1}
    classified = pq.read_table(landing / "_mapping" / "classified.parquet").to_pylist()
    assert classified == [
        {
            "node": "order_items",
            "rule": "test_product: a test product the shop placed itself",
            "file": "orders.csv",
            "row": 4,
        }
    ]
    report_file = json.loads((landing / "_mapping" / "report.json").read_text())
    assert report_file["inputs"]["export"]["records"] == 4


def test_a_declared_identifier_is_delivered_to_the_identifiers_source(marketplace):
    _, landing = marketplace
    found = {(r["customer_id"], r["id_type"], r["id_value"]) for r in rows(landing, "identifiers")}
    assert found == {("c1", "person_id", "u1"), ("c2", "person_id", "u1"), ("c3", "person_id", "u2")}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # (text replaced in MAPPING, the message: file:line: key path: problem)
        (
            ("      qty: {from: qty, type: integer}", "      qty: {from: qty, type: integr}"),
            r":16: inputs\.export\.columns\.qty\.type: Input should be",
        ),
        (
            ("  orders:\n    from: export", "  orderz:\n    from: export"),
            r":1: \(top level\): .*'orderz' is not a landing source",
        ),
        (
            (
                '      placed: {from: placed, type: timestamp, format: "%d/%m/%Y %H:%M"}',
                '      placed: {from: placed, type: integer, format: "%d/%m/%Y"}',
            ),
            r":12: inputs\.export\.columns\.placed: .*'format' applies to timestamp and date",
        ),
        (
            ("      order_id: order_no\n      product_id: sku", "      product_id: sku"),
            r"outputs\.order_items: the contract requires columns \['order_id'\]",
        ),
        (
            ("    timezone: America/Sao_Paulo\n", ""),
            r":4: inputs\.export: column 'placed' is a timestamp: declare the zone",
        ),
        (("      country: {value: BR}", "      country: 42"), r"a constant is written \{value: 42\}"),
        (
            (
                "    group_by: [customer_id]\n    columns:\n      customer_id: shopper\n      country",
                "    group_by: [nobody]\n    columns:\n      customer_id: shopper\n      country",
            ),
            r"group_by names \['nobody'\]",
        ),
    ],
)
def test_a_mapping_error_names_the_file_the_line_and_the_key(tmp_path, edit, message):
    old, new = edit
    assert old in MAPPING
    path = write(tmp_path / "bad.yml", MAPPING.replace(old, new, 1))
    with pytest.raises(MappingError, match=message) as caught:
        load_mapping(path)
    assert str(caught.value).startswith(str(path))


def test_sql_that_does_not_run_names_the_step_and_its_line(tmp_path):
    path = write(
        tmp_path / "m.yml", MAPPING.replace("customer_id: any_value(shopper)", "customer_id: any_value(nobody)")
    )
    write(tmp_path / "export" / "orders.csv", ORDERS_CSV)
    with pytest.raises(MappingError, match=r"m\.yml:\d+: outputs\.orders: Binder Error: .*nobody"):
        run_mapping(load_mapping(path), tmp_path / "export", tmp_path / "landing")
    assert not (tmp_path / "landing").exists()


def test_a_missing_export_column_names_the_mapping_line_the_file_and_what_it_has(tmp_path):
    path = write(tmp_path / "m.yml", MAPPING)
    write(tmp_path / "export" / "orders.csv", ORDERS_CSV.replace("shopper", "buyer"))
    with pytest.raises(
        MappingError,
        match=r"m\.yml:11: inputs\.export\.columns\.shopper: no column 'shopper' in orders\.csv \(it has: order_no, buyer",
    ):
        run_mapping(load_mapping(path), tmp_path / "export", tmp_path / "landing")


def test_a_failed_mapping_never_touches_the_landing_folder(tmp_path):
    landing = tmp_path / "landing"
    (landing / "events").mkdir(parents=True)
    (landing / "events" / "kept.csv").write_text("event_id\n1\n")
    path = write(
        tmp_path / "m.yml", MAPPING.replace("customer_id: any_value(shopper)", "customer_id: any_value(nobody)")
    )
    write(tmp_path / "export" / "orders.csv", ORDERS_CSV)
    with pytest.raises(MappingError):
        run_mapping(load_mapping(path), tmp_path / "export", landing)
    assert [p.name for p in landing.rglob("*")] == ["events", "kept.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "landing", "m.yml"]


EPOCHS = """\
name: epochs
description: epoch seconds and milliseconds, booleans, dates
inputs:
  log:
    files: log.csv
    columns:
      id: id
      s: {from: s, type: timestamp, epoch: s}
      ms: {from: ms, type: timestamp, epoch: ms}
      born: {from: born, type: date, format: "%d.%m.%Y"}
      active: {from: active, type: boolean, true_values: ["ja"], false_values: ["nein"]}
outputs:
  customers:
    from: log
    columns:
      customer_id: id
      birth_date: born
      signup_at: s
      updated_at: ms
  products:
    from: log
    columns:
      product_id: id
      is_active: active
"""


def test_epoch_seconds_and_milliseconds_dates_with_a_format_and_booleans_with_their_words(tmp_path):
    write(
        tmp_path / "in" / "log.csv",
        "id,s,ms,born,active\nx,1700000000,1700000000123,24.12.1990,ja\ny,,,,nein\nz,1,1,1990-12-24,ja\n",
    )
    landing = tmp_path / "landing"
    run_mapping(load_mapping(write(tmp_path / "m.yml", EPOCHS)), tmp_path / "in", landing)
    customers = {r["customer_id"]: r for r in rows(landing, "customers")}
    assert customers["x"]["signup_at"] == "2023-11-14T22:13:20+00:00"
    assert customers["x"]["updated_at"] == "2023-11-14T22:13:20.123000+00:00"
    assert customers["x"]["birth_date"] == "1990-12-24"
    assert (customers["y"]["signup_at"], customers["y"]["birth_date"]) == (None, None)
    # a value that does not parse under its format is delivered as it came, for staging to flag
    assert customers["z"]["birth_date"] == "1990-12-24"
    assert {r["product_id"]: r["is_active"] for r in rows(landing, "products")} == {
        "x": "true",
        "y": "false",
        "z": "true",
    }


# --- the built-in mappings on the shared real exports ----------------------------------------------


def _online_retail_ii_csv(tmp_path: Path, source: Path) -> Path:
    """A faithful "Online Retail II" CSV (UCI dataset 502's column names, its ISO date text, the
    Customer ID as a decimal, descriptions missing) made from a slice of the shared export."""
    out = tmp_path / "online_retail_II.csv"
    duckdb.sql(
        f"""
        copy (
            select InvoiceNo as Invoice, StockCode,
                case when StockCode in (select StockCode from read_parquet('{source}') group by 1 order by 1 limit 40)
                    then null else Description end as Description,
                Quantity, strftime(InvoiceDate, '%Y-%m-%d %H:%M:%S') as InvoiceDate, UnitPrice as Price,
                CustomerID as "Customer ID", Country
            from read_parquet('{source}', file_row_number = true) where InvoiceDate < timestamp '2010-12-08'
            order by file_row_number
        ) to '{out}' (header, delimiter ',')
        """
    )
    return out


@pytest.mark.skipif(not (SHARED / "online_retail").is_dir(), reason=f"no Online Retail export in {SHARED}")
def test_online_retail_ii_column_names_and_missing_descriptions_map_like_the_first_export(tmp_path):
    source = SHARED / "online_retail" / "online_retail.parquet"
    first = tmp_path / "first" / "online_retail.parquet"
    first.parent.mkdir()
    duckdb.sql(
        f"copy (select * exclude (file_row_number) from read_parquet('{source}', file_row_number = true) "
        f"where InvoiceDate < timestamp '2010-12-08' order by file_row_number) to '{first}'"
    )
    second = _online_retail_ii_csv(tmp_path, source)
    a, b = tmp_path / "a", tmp_path / "b"
    report_a = map_export("online_retail", first, a)
    report_b = map_export("online_retail", second, b)
    assert report_a.outputs == report_b.outputs
    assert report_b.unparsed == {}
    for source_name in ("orders", "order_items", "pos_transactions", "customers"):
        assert rows(a, source_name) == rows(b, source_name), source_name
    names_b = {r["product_id"]: r["name"] for r in rows(b, "products")}
    assert sum(1 for n in names_b.values() if n is None) > 0  # descriptions missing: no name, no crash
    assert check_landing(b).errors == []


@pytest.mark.skipif(not (SHARED / "ga4_sample").is_dir(), reason=f"no GA4 sample in {SHARED}")
def test_ga4_nested_and_flattened_exports_map_to_the_same_events(tmp_path):
    flat = SHARED / "ga4_sample" / "ga4_events_sample.jsonl"
    nested = tmp_path / "nested" / "events.jsonl"
    nested.parent.mkdir()
    with flat.open() as src, nested.open("w") as out:
        for line in src:
            record = {k.lower(): v for k, v in json.loads(line).items()}
            for key in ("event_params", "device", "geo", "traffic_source", "ecommerce", "items"):
                if isinstance(record.get(key), str):
                    record[key] = json.loads(record[key])
            out.write(json.dumps(record) + "\n")
    a, b = tmp_path / "a", tmp_path / "b"
    report = map_export("ga4", flat, a)
    map_export("ga4", nested, b)
    assert rows(a, "events") == rows(b, "events")
    assert rows(a, "products") == rows(b, "products")
    events = rows(a, "events")
    # every record is an event row (items exploded: one per item) or classified
    shopping = report.inputs["events"]["records"] - report.classified["shopping"]["not_a_shopping_event"]
    assert shopping == len({(e["anonymous_id"], e["event_ts"], e["event_id"].rsplit("-", 1)[0]) for e in events})
    types = {e["event_type"] for e in events}
    assert types <= {"page_view", "product_view", "search", "add_to_cart", "remove_from_cart", "checkout", "purchase"}
    assert {"page_view", "product_view", "add_to_cart"} <= types
    assert all(e["session_id"].startswith(e["anonymous_id"] + "-") for e in events)
    assert report.unmapped == {}
    assert check_landing(a).errors == []


@pytest.mark.skipif(not (SHARED / "retailrocket_sample").is_dir(), reason=f"no RetailRocket sample in {SHARED}")
def test_an_anonymous_event_log_gets_sessions_from_gaps_and_its_items_as_the_catalogue(tmp_path):
    report = map_export("retailrocket", SHARED / "retailrocket_sample" / "events_sample.csv", tmp_path / "l")
    events = rows(tmp_path / "l", "events")
    assert len(events) == report.inputs["events"]["records"] == 100
    assert {e["customer_id"] for e in events} == {None}
    assert {e["event_type"] for e in events} <= {"product_view", "add_to_cart", "purchase"}
    # a session never spans a gap of more than 30 minutes
    con = duckdb.connect()
    gaps = con.execute(
        "select max(g) from (select cast(event_ts as timestamptz) - lag(cast(event_ts as timestamptz)) "
        "over (partition by session_id order by event_ts) as g from read_parquet(?))",
        [str(tmp_path / "l" / "events" / "events.parquet")],
    ).fetchone()[0]
    assert gaps is None or gaps.total_seconds() <= 30 * 60
    assert {p["product_id"] for p in rows(tmp_path / "l", "products")} == {e["product_id"] for e in events}


# --- the preflight ---------------------------------------------------------------------------------


def test_the_preflight_names_file_column_line_value_and_what_to_do(tmp_path):
    landing = tmp_path / "landing"
    write(
        landing / "orders" / "orders.csv",
        "order_id,customer_id,ordered_at,status\n"
        "o1,c1,2024-01-01T10:00:00Z,completed\n"
        "o2,,2024-01-02T10:00:00Z,completed\n"
        "o3,c3,31/01/2024,shipped\n",
    )
    write(landing / "customers" / "export.csv", "Invoice,Price\n1,2\n")
    write(landing / "products" / "p.xlsx", "not a sheet")
    report = check_landing(landing)
    said = [str(f) for f in report.findings]
    assert any(
        s.startswith("ERROR customers/export.csv: no column is a contract column") and "tessera sources map" in s
        for s in said
    )
    assert any(s.startswith("ERROR products/p.xlsx: a spreadsheet") for s in said)
    assert any(
        "orders/orders.csv: column customer_id: required value missing" in s and "line 3: ''" not in s and "line 3" in s
        for s in said
    )
    assert any("column ordered_at: does not read as a timestamp" in s and "line 4: '31/01/2024'" in s for s in said)
    assert any("column status: not one of completed, cancelled, returned" in s and "'shipped'" in s for s in said)
    assert len(report.errors) == 2
    assert report.rows["orders"] == 3


def test_the_cli_checks_an_export_through_its_mapping_without_writing(tmp_path, capsys, monkeypatch):
    from tessera.cli import main

    monkeypatch.setenv("TESSERA_LANDING_DIR", str(tmp_path / "landing"))
    path = write(tmp_path / "m.yml", MAPPING)
    write(tmp_path / "export" / "orders.csv", ORDERS_CSV)
    assert main(["sources", "check", "--mapping", str(path), "--input", str(tmp_path / "export")]) == 0
    out = capsys.readouterr().out
    assert "export.placed: 1 value(s) do not parse as timestamp (orders.csv row 4: 'not a date')" in out
    assert "orders.status: value(s) not in the value map, delivered as they came: 'em trânsito' (1)" in out
    assert "classified in order_items: test_product 1 rows" in out
    assert "orders/orders.parquet: column ordered_at: required value missing (33.3% of the file, above the 1%" in out
    assert "[row 3: None]" in out
    assert not (tmp_path / "landing").exists()
    assert main(["sources", "map", "nonexistent", str(tmp_path / "export")]) == 2
    assert "neither a mapping file nor a built-in mapping" in capsys.readouterr().err


@pytest.mark.graph
def test_the_raw_gate_fails_on_an_export_dropped_into_landing_unmapped_naming_the_file_and_what_to_do(
    tmp_path, monkeypatch
):
    import dagster as dg

    from tests.conftest import materialized_keys, run_job, use_data_dir

    use_data_dir(monkeypatch, tmp_path / "data")
    landing = tmp_path / "data" / "landing"
    write(landing / "orders" / "Online Retail.csv", "Invoice,StockCode,Price,Customer ID\n489434,85048,6.95,13085\n")
    result = run_job([dg.AssetKey(["raw", "orders"])])
    assert not result.success
    gate = next(e for e in result.get_asset_check_evaluations() if e.check_name == "gx_raw_orders")
    failed = {f["expectation"]: f for f in gate.metadata["failed_expectations"].value}
    said = failed["landing files fit the contract (tessera sources check)"]["observed"]
    assert (
        "ERROR orders/Online Retail.csv: no column is a contract column of orders (it has: Invoice, StockCode" in said
    )
    assert "tessera sources map" in said
    # the file's row is in raw, with its file and row, as every bad row is
    assert {k.to_user_string() for k in materialized_keys(result)} == {"raw/orders"}


@pytest.mark.skipif(not (SHARED / "ga4_sample").is_dir(), reason=f"no GA4 sample in {SHARED}")
def test_mapping_the_same_export_twice_writes_the_same_bytes(tmp_path):
    export = SHARED / "ga4_sample" / "ga4_events_sample.jsonl"
    map_export("ga4", export, tmp_path / "a")
    map_export("ga4", export, tmp_path / "b")
    for source in ("events", "products"):
        assert (tmp_path / "a" / source / f"{source}.parquet").read_bytes() == (
            tmp_path / "b" / source / f"{source}.parquet"
        ).read_bytes()
