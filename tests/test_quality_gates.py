"""Great Expectations suites on marts and published outputs: what they catch, that a failing one
blocks what is downstream, that row counts are judged against the last passing run, and that
every validation is rendered as Data Docs linked from the check."""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from tessera.landing.generate import GenerateConfig, generate
from tessera.quality.suites import TABLE_ROWS, gate_parameters, validate_table
from tessera.settings import EXPECTATIONS_DIR, load_settings
from tests.conftest import materialized_keys, use_data_dir

SMALL_GATE_DATA = {"customers": 120, "days": 30, "seed": 3, "end_date": date(2026, 10, 31)}


def _suite(tmp_path, expectations: list[dict], references: list[dict] | None = None):
    meta = {"table": "shop.orders", **({"references": references} if references else {})}
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"name": "test_orders", "meta": meta, "expectations": expectations}))
    return path


@pytest.fixture
def con():
    c = duckdb.connect()
    c.execute("create schema shop")
    c.execute("create table shop.customers as select * from (values ('c1'), ('c2')) as t(customer_key)")
    c.execute(
        """create table shop.orders as select * from (values
            ('o1', 'c1', timestamp '2026-10-01 10:00:00'),
            ('o2', 'c2', timestamp '2026-10-02 10:00:00'),
            ('o3', null, timestamp '2026-10-03 10:00:00'),
            ('o4', 'c9', timestamp '2031-01-01 00:00:00')
        ) as t(order_id, customer_key, ordered_at)"""
    )
    yield c
    c.close()


def _results(result) -> dict[str, bool]:
    return {f"{r['expectation']}:{r['column']}": r["success"] for r in result.results}


def test_referential_integrity_and_timestamp_range_catch_the_bad_rows_only(tmp_path, con):
    path = _suite(
        tmp_path,
        [
            {
                "type": "expect_table_columns_to_match_set",
                "kwargs": {"column_set": ["order_id", "customer_key", "ordered_at"], "exact_match": True},
            },
            {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "_customer_found", "value_set": [True]}},
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {
                    "column": "ordered_at",
                    "min_value": {"$PARAMETER": "shop_first_day"},
                    "max_value": {"$PARAMETER": "latest_plausible_time"},
                },
            },
        ],
        references=[
            {"as": "_customer_found", "column": "customer_key", "table": "shop.customers", "key": "customer_key"}
        ],
    )
    params = gate_parameters(None, 0.5, "2026-01-01", now=datetime(2026, 11, 1))
    result = validate_table(con, "shop.orders", path, 1000, parameters=params)
    assert not result.success
    # the schema expectation passes although the batch carries derived columns
    assert _results(result) == {
        "expect_table_columns_to_match_set:None": True,
        "expect_column_values_to_be_in_set:_customer_found": False,
        "expect_column_values_to_be_between:ordered_at": False,
    }
    by_type = {r["expectation"]: r for r in result.failed}
    assert by_type["expect_column_values_to_be_in_set"]["unexpected_percent"] == 25.0  # only c9; NULL is no orphan
    assert by_type["expect_column_values_to_be_between"]["unexpected_sample"] == ["2031-01-01 00:00:00"]

    con.execute("delete from shop.orders where order_id = 'o4'")
    assert validate_table(con, "shop.orders", path, 1000, parameters=params).success


def test_a_suite_with_a_compound_column_expectation_is_validated(tmp_path, con):
    # regression: looking up a reference set by (expectation, column) hashed the column list of a
    # compound expectation, so every publish gate (customer_pkey + rank unique) crashed with
    # "unhashable type: 'list'" and nothing was published
    path = _suite(
        tmp_path,
        [{"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["order_id", "customer_key"]}}],
    )
    result = validate_table(con, "shop.orders", path, 1000, parameters=gate_parameters(None, 0.5, "2026-01-01"))
    assert result.success
    assert [r["column"] for r in result.results] == [["order_id", "customer_key"]]


def test_row_count_is_judged_against_the_last_passing_run_even_on_a_sample(tmp_path, con):
    path = _suite(
        tmp_path,
        [
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {
                    "column": TABLE_ROWS,
                    "min_value": {"$PARAMETER": "min_rows_vs_last_run"},
                    "max_value": {"$PARAMETER": "max_rows_vs_last_run"},
                },
            }
        ],
    )
    # first run: no bound
    assert validate_table(con, "shop.orders", path, 1000, parameters=gate_parameters(None, 0.5, "2000-01-01")).success
    # 4 rows against a last run of 4, 7 (within ±50 %) and 10 (at least 5 expected)
    assert validate_table(con, "shop.orders", path, 1000, parameters=gate_parameters(4, 0.5, "2000-01-01")).success
    assert validate_table(con, "shop.orders", path, 1000, parameters=gate_parameters(7, 0.5, "2000-01-01")).success
    # a table empty last time has no volume to compare with: its first rows pass, as on a first run
    assert gate_parameters(0, 0.5, "2000-01-01")["max_rows_vs_last_run"] is None
    assert validate_table(con, "shop.orders", path, 1000, parameters=gate_parameters(0, 0.5, "2000-01-01")).success
    shrunk = validate_table(con, "shop.orders", path, 1000, parameters=gate_parameters(10, 0.5, "2000-01-01"))
    assert not shrunk.success and shrunk.failed[0]["unexpected_sample"][0] == "4"
    # a 2-row sample of the table still knows the table holds 4
    sampled = validate_table(con, "shop.orders", path, 2, parameters=gate_parameters(10, 0.5, "2000-01-01"))
    assert sampled.sampled and sampled.rows_validated == 2 and not sampled.success


def test_data_docs_are_written_and_keep_every_suite_in_one_index(tmp_path, con):
    path = _suite(tmp_path, [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "order_id"}}])
    docs = tmp_path / "docs"
    first = validate_table(con, "shop.orders", path, 1000, docs_dir=docs, run_name="run-1")
    raw = validate_table(
        con, "shop.customers", EXPECTATIONS_DIR / "marts_dim_products.json", 1000, docs_dir=docs, run_name="run-2"
    )  # another suite into the same site (it fails: wrong table, which the page shows)
    assert first.docs_page.is_file() and first.docs_index == docs / "index.html"
    assert "order_id" in first.docs_page.read_text()
    index = first.docs_index.read_text()
    assert "test_orders" in index and "marts_dim_products" in index and not raw.success


PERSONAL_BAD_VALUES = ("not-an-email-bobby@", "carol.at.example.org", "Annabelle-Secret", "C0000042")


def test_neither_data_docs_nor_check_metadata_hold_a_value_of_a_personal_column(tmp_path):
    # issue 33: Data Docs and the checks' metadata listed malformed emails, and one 5 MB value
    # made a 35 MB Dagster event. Values of other columns are still shown, cut short.
    from orchestration.metadata import METADATA_ENTRY_MAX_CHARS
    from orchestration.quality import suite_metadata
    from tessera.quality.suites import SAMPLE_CHARS, WITHHELD

    con = duckdb.connect()
    con.execute("create schema shop")
    con.execute(
        "create table shop.customers (customer_id varchar, email varchar, first_name varchar, currency varchar)"
    )
    con.executemany(
        "insert into shop.customers values (?, ?, ?, ?)",
        [
            ["C0000042", "anna@example.com", "Annabelle-Secret", "EUR"],
            ["C0000042", "not-an-email-bobby@", "Annabelle-Secret", "EURO"],
            ["C0000043", "carol.at.example.org", "Annabelle-Secret", "X" * 5_000_000],
            ["C0000044", "dave@example.net", "Dave", "USD"],
        ],
    )
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"name": "test_customers", "meta": {"table": "shop.customers"}, "expectations": [
        {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "email", "regex": "^[^@]+@[^@]+[.][a-z]+$"}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "customer_id"}},
        {"type": "expect_column_most_common_value_to_be_in_set", "kwargs": {"column": "first_name", "value_set": ["Dave"]}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "currency", "value_set": ["EUR", "USD"]}},
    ]}))  # fmt: skip
    docs = tmp_path / "docs"
    result = validate_table(con, "shop.customers", path, 1000, docs_dir=docs, run_name="erasure-run")

    by_column = {r["column"]: r for r in result.results}
    assert not result.success and {c for c, r in by_column.items() if not r["success"]} == set(by_column)
    assert by_column["email"]["unexpected_percent"] == 50.0 and by_column["email"]["unexpected_sample"] == []
    assert by_column["customer_id"]["unexpected_sample"] == []
    assert by_column["first_name"]["observed"] == WITHHELD
    # a column that is not personal keeps its sample, each value cut short
    assert by_column["currency"]["unexpected_sample"] == ["EURO", "X" * (SAMPLE_CHARS - 1) + "…"]
    written = {
        f: f.read_text(errors="replace") for f in docs.rglob("*") if f.is_file() and f.suffix in (".html", ".json")
    }
    assert result.docs_page in written and "EURO" in written[result.docs_page]
    assert sum(map(len, written.values())) < 2_000_000  # the 5 MB value is in no file
    metadata = suite_metadata(result)
    texts = {label: json.dumps(getattr(v, "value", v), default=str) for label, v in metadata.items()}
    assert "EURO" in texts["results"]
    assert all(len(t) <= METADATA_ENTRY_MAX_CHARS + 2 for t in texts.values())
    for value in PERSONAL_BAD_VALUES:
        assert not [f for f, text in written.items() if value.lower() in text.lower()], value
        assert not [label for label, text in texts.items() if value.lower() in text.lower()], value
        assert value not in result.describe()


# ---------------------------------------------------------------- through Dagster


@pytest.fixture
def small_data(tmp_path, monkeypatch):
    use_data_dir(monkeypatch, tmp_path / "data")
    settings = load_settings()
    generate(GenerateConfig(**SMALL_GATE_DATA), settings.landing_dir, settings.truth_dir)
    return settings


def _execute(instance, selection=None):
    from orchestration.definitions import defs

    return defs.resolve_job_def("tessera_all").execute_in_process(
        instance=instance,
        raise_on_error=False,
        asset_selection=selection,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )


@pytest.mark.graph
def test_a_failing_marts_suite_blocks_the_recommender_and_every_published_output(small_data, tmp_path, monkeypatch):
    monkeypatch.delenv("TESSERA_GX_DOCS_DIR")  # the gate's Data Docs page is read below
    suites = tmp_path / "expectations"
    shutil.copytree(EXPECTATIONS_DIR, suites)
    spec = json.loads((suites / "marts_dim_customers.json").read_text())
    spec["expectations"].append(
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "gender", "value_set": ["F"]}}
    )
    (suites / "marts_dim_customers.json").write_text(json.dumps(spec))
    monkeypatch.setattr("orchestration.quality.EXPECTATIONS_DIR", suites)

    result = _execute(dg.DagsterInstance.ephemeral())
    assert not result.success
    [gate] = [e for e in result.get_asset_check_evaluations() if e.check_name == "gx_marts_dim_customers"]
    assert not gate.passed and "expect_column_values_to_be_in_set(gender)" in gate.description
    page = Path(gate.metadata["data_docs"].value)
    assert page.suffix == ".html" and "gender" in page.read_text()
    keys = {k.to_user_string() for k in materialized_keys(result)}
    assert "marts/dim_customers" in keys
    assert not {k for k in keys if k.startswith(("ml/", "publish/"))}, keys


@pytest.mark.graph
def test_a_source_that_suddenly_shrinks_fails_its_gate_on_the_next_run(small_data):
    instance = dg.DagsterInstance.ephemeral()
    orders = dg.AssetKey(["raw", "orders"])
    first = _execute(instance, [orders])
    assert first.success

    path = small_data.landing_dir / "orders" / "orders.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.head(len(frame) // 3).to_csv(path, index=False)  # two thirds of the orders went missing
    second = _execute(instance, [orders])
    assert not second.success
    [gate] = [e for e in second.get_asset_check_evaluations() if e.check_name == "gx_raw_orders"]
    assert not gate.passed and f"expect_column_values_to_be_between({TABLE_ROWS})" in gate.description
    previous = next(e for e in first.get_asset_check_evaluations() if e.check_name == "gx_raw_orders")
    bounds = gate.metadata["row_count_bounds_vs_last_run"].value
    assert bounds[0] == int(previous.metadata["rows_in_table"].value * 0.5)
    assert gate.metadata["rows_in_table"].value == len(frame) // 3


def test_a_sample_is_the_requested_size_and_depends_on_the_rows_not_their_order():
    """_seeded_sample: exactly `rows` rows, the same ones whatever the physical order and thread
    count, another seed gives another sample, and a sample of the whole population is all of it."""
    from tessera.quality.suites import _seeded_sample

    c = duckdb.connect()
    c.execute("create table a as select i, 'v' || i as v from range(50000) as t(i)")
    c.execute("create table b as select * from a order by hash(i * 7919)")  # same rows, shuffled
    picks = {}
    for table in ("a", "b"):
        for threads in (1, 2):
            c.execute(f"set threads = {threads}")
            picks[table, threads] = c.execute(
                f"select i from {_seeded_sample(table, 700, 50000, 42)} order by i"
            ).fetchall()
    assert len(picks["a", 1]) == 700 and len(set(picks["a", 1])) == 700
    assert all(p == picks["a", 1] for p in picks.values())
    other = c.execute(f"select i from {_seeded_sample('a', 700, 50000, 43)} order by i").fetchall()
    assert len(other) == 700 and len(set(other) & set(picks["a", 1])) < 100
    assert c.execute(f"select count(*) from {_seeded_sample('a', 50000, 50000, 42)}").fetchone()[0] == 50000
    # the sample is spread over the table, not its first rows
    assert c.execute(f"select max(i) > 45000 and min(i) < 5000 from {_seeded_sample('a', 700, 50000, 42)}").fetchone()[
        0
    ]


# ---------------------------------------------------------------- delivery checks (tessera/quality/delivery.py)


def _deliver(tmp_path, con, name: str, frame: pd.DataFrame, gate: str = "gx_raw_customers", **limits):
    """Land `frame` as customers/<name> (replacing the folder's files), load it, and run the delivery
    checks; a pass is recorded as the next run's baseline."""
    from tessera.landing.contract import SOURCES_BY_NAME
    from tessera.landing.loader import load_source
    from tessera.quality.delivery import check_delivery, record_delivery

    folder = tmp_path / "landing" / "customers"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    frame.to_csv(folder / name, index=False)
    source = SOURCES_BY_NAME["customers"]
    load_source(con, source, tmp_path / "landing")
    options = {"max_increase": 0.2, "min_rows": 50, "accepted_missing": frozenset()} | limits
    results, profiles = check_delivery(con, source, gate, **options)
    failed = [r for r in results if not r["success"]]
    if not failed:
        record_delivery(con, gate, source, profiles, run_id=f"run-{name}")
    return results, failed


def test_an_empty_source_passes_its_delivery_checks_and_is_recorded(tmp_path):
    # regression: record_delivery inserted the delivered files with executemany, which DuckDB
    # refuses for an empty list, so every shop without email events or privacy requests (both real
    # exports in ../shared/data) failed its raw gates with "executemany requires a non-empty list"
    from tessera.landing.contract import SOURCES_BY_NAME
    from tessera.landing.loader import load_source
    from tessera.quality.delivery import check_delivery, record_delivery

    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    source = SOURCES_BY_NAME["privacy"]
    load_source(con, source, tmp_path / "landing")
    results, profiles = check_delivery(
        con, source, "gx_raw_privacy", max_increase=0.2, min_rows=50, accepted_missing=frozenset()
    )
    assert (profiles, [r for r in results if not r["success"]]) == ([], [])
    record_delivery(con, "gx_raw_privacy", source, profiles, run_id="run-empty")
    recorded = con.execute(
        "select count(*), count(*) filter (where delivered) from quality.delivery_columns"
    ).fetchone()
    assert recorded == (len(source.column_names), 0)


def _crm(rows: int, empty_email_pct: int = 2) -> pd.DataFrame:
    """A CRM export of `rows` profiles, `empty_email_pct` in every hundred without an email."""
    return pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(rows)],
            "email": ["" if i % 100 < empty_email_pct else f"p{i}@example.com" for i in range(rows)],
            "phone": [f"07700 9{i:05d}" for i in range(rows)],
            "country": ["GB"] * rows,
            "signup_at": ["2026-01-01T10:00:00Z"] * rows,
        }
    )


def test_a_delivery_without_a_column_the_source_sent_before_fails_naming_the_file_and_the_column(tmp_path):
    # regression (issue 32): a CRM delivery without its email column passed every gate (SUCCESS,
    # 125 checks), every email vanished from dim_customers and 1,235 emails were decided for
    # customers with no address
    con = duckdb.connect()
    first, failed = _deliver(tmp_path, con, "crm_day1.csv", _crm(300))
    assert not failed and [r["expectation"] for r in first] == ["delivery baseline"]

    _, failed = _deliver(tmp_path, con, "crm_day2.csv", _crm(300).drop(columns="email"))
    by_check = {r["expectation"]: r for r in failed}
    dropped = by_check["column delivered as at the last pass"]
    assert dropped["column"] == "email" and dropped["unexpected_sample"] == ["crm_day2.csv"]
    assert "column email is missing from crm_day2.csv" in dropped["observed"]
    assert "TESSERA_GX_ACCEPTED_MISSING_COLUMNS=customers.email" in dropped["observed"]
    # the empty share of the key attribute went from 2 % to 100 % too
    jumped = by_check["empty share within TESSERA_GX_MAX_NULL_SHARE_INCREASE of the last pass"]
    assert jumped["column"] == "email" and "crm_day2.csv: email empty in 100.0 % of its 300 rows" in jumped["observed"]
    assert "it was 2.0 % of 300 rows" in jumped["observed"]
    assert {r["column"] for r in failed} == {"email"}


def test_an_email_column_delivered_empty_fails_on_its_empty_share_alone(tmp_path):
    con = duckdb.connect()
    _deliver(tmp_path, con, "crm_day1.csv", _crm(300))
    # 2 % empty before; 21 % is within the allowed 20 points
    _, failed = _deliver(tmp_path, con, "crm_day2.csv", _crm(300, empty_email_pct=21))
    assert not failed
    # judged against the last pass (21 %), not the first
    _, failed = _deliver(tmp_path, con, "crm_day3.csv", _crm(300, empty_email_pct=45))
    [jumped] = failed
    assert jumped["column"] == "email" and jumped["unexpected_sample"] == ["crm_day3.csv"]
    assert "crm_day3.csv: email empty in 45.0 % of its 300 rows" in jumped["observed"]
    assert "it was 21.0 % of 300 rows" in jumped["observed"]


def test_a_small_file_is_judged_with_the_whole_table_and_an_accepted_drop_passes(tmp_path):
    con = duckdb.connect()
    _deliver(tmp_path, con, "crm_day1.csv", _crm(300))
    # 30 rows are below min_rows: the file is not judged alone, the table (all of it) is
    _, failed = _deliver(tmp_path, con, "crm_small.csv", _crm(30).assign(phone=""))
    [jumped] = [r for r in failed if r["column"] == "phone"]
    assert "the whole table: phone empty in 100.0 % of 30 rows (files: crm_small.csv 100.0 %)" in jumped["observed"]
    # a column dropped on purpose: named in TESSERA_GX_ACCEPTED_MISSING_COLUMNS, the gate passes
    results, failed = _deliver(
        tmp_path, con, "crm_day2.csv", _crm(300).drop(columns="country"),
        accepted_missing=frozenset({"customers.country"}),
    )  # fmt: skip
    assert [r["column"] for r in failed] == ["country"]  # its empty share still jumped: not accepted
    results, failed = _deliver(
        tmp_path, con, "crm_day2.csv", _crm(300).drop(columns="country"),
        accepted_missing=frozenset({"customers.country"}), max_increase=1.0,
    )  # fmt: skip
    assert not failed
    [note] = [r for r in results if r["column"] == "country" and r["expectation"].startswith("column")]
    assert "crm_day2.csv lack it: accepted" in note["observed"]


def test_a_header_only_file_without_a_column_drops_nothing_and_passes(tmp_path):
    con = duckdb.connect()
    _deliver(tmp_path, con, "crm_day1.csv", _crm(300))
    results, failed = _deliver(tmp_path, con, "crm_empty.csv", _crm(0).drop(columns="email"))
    assert not [r for r in failed if r["expectation"].startswith("column")]
    [email] = [r for r in results if r["column"] == "email" and r["expectation"].startswith("column")]
    assert email["success"]


@pytest.mark.graph
def test_a_source_that_drops_a_column_fails_its_gate_in_dagster_and_blocks_staging(small_data):
    instance = dg.DagsterInstance.ephemeral()
    customers = dg.AssetKey(["raw", "customers"])
    staged = dg.AssetKey(["staging", "stg_customers"])
    selection = [
        customers,
        staged,
        dg.AssetKey(["reference", "countries"]),
        dg.AssetKey(["reference", "country_aliases"]),
    ]
    first = _execute(instance, selection)
    assert first.success

    path = small_data.landing_dir / "customers" / "customers.csv"
    pd.read_csv(path, dtype=str, keep_default_na=False).drop(columns="email").to_csv(path, index=False)
    second = _execute(instance, selection)
    assert not second.success
    [gate] = [e for e in second.get_asset_check_evaluations() if e.check_name == "gx_raw_customers"]
    assert not gate.passed
    assert "column email is missing from customers.csv" in gate.description
    assert "email empty in 100.0 %" in gate.description
    assert staged not in materialized_keys(second)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TESSERA_PHONE_DEFAULT_COUNTRY", "GBR", "must be an ISO 3166-1 alpha-2 code in capitals (e.g. GB), got 'GBR'"),
        ("TESSERA_PHONE_DEFAULT_COUNTRY", "gb", "got 'gb'"),
        ("TESSERA_GX_ACCEPTED_MISSING_COLUMNS", "customers.email,customers.fax",
         "'customers.fax' is not a source.column of the landing contract"),
        ("TESSERA_GX_MAX_NULL_SHARE_INCREASE", "20", "must be a share between 0 and 1, got 20.0"),
        ("TESSERA_GX_NULL_SHARE_MIN_ROWS", "0", "must be at least 1, got 0"),
    ],
)  # fmt: skip
def test_a_bad_delivery_or_phone_setting_is_refused_with_its_name_and_value(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable) as error:
        load_settings()
    assert message in str(error.value)


def test_delivery_and_phone_settings_default_to_their_documented_values(monkeypatch):
    for name in ("TESSERA_PHONE_DEFAULT_COUNTRY", "TESSERA_GX_MAX_NULL_SHARE_INCREASE", "TESSERA_GX_NULL_SHARE_MIN_ROWS",
                 "TESSERA_GX_ACCEPTED_MISSING_COLUMNS"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.phone_default_country == "GB"
    assert (settings.gx_max_null_share_increase, settings.gx_null_share_min_rows) == (0.2, 200)
    assert settings.gx_accepted_missing_columns == frozenset()
    assert settings.dbt_env()["TESSERA_PHONE_DEFAULT_COUNTRY"] == "GB"
    monkeypatch.setenv("TESSERA_GX_ACCEPTED_MISSING_COLUMNS", " customers.email , orders.channel,")
    assert load_settings().gx_accepted_missing_columns == {"customers.email", "orders.channel"}


def test_the_optional_identifiers_source_passes_its_gate_empty_and_fails_it_when_most_values_lack(tmp_path):
    # a shop without declared identifiers sends no folder: its raw table is empty and must pass
    from tessera.landing.contract import SOURCES_BY_NAME
    from tessera.landing.loader import load_source
    from tessera.quality.gate import run_gate

    settings = load_settings()
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    source = SOURCES_BY_NAME["identifiers"]
    suite = EXPECTATIONS_DIR / "raw_identifiers.json"
    load_source(con, source, tmp_path / "landing")
    empty = run_gate(con, settings, "gx_raw_identifiers", "raw.identifiers", suite, "run-empty")
    assert (empty.success, empty.rows_in_table, empty.failed) == (True, 0, [])

    folder = tmp_path / "landing" / "identifiers"
    folder.mkdir(parents=True)
    rows = [f"C{i},person_id,P{i // 2},2026-10-01T00:00:00Z" for i in range(50)]
    rows += [f"C{i},,P{i}," for i in range(50, 60)]  # 10 of 65 rows without an id type
    rows += [f"C{i},---,P{i}," for i in range(60, 65)]  # 5 with an id type that names nothing
    (folder / "ids.csv").write_text("customer_id,id_type,id_value,observed_at\n" + "\n".join(rows) + "\n")
    load_source(con, source, tmp_path / "landing")
    bad = run_gate(con, settings, "gx_raw_identifiers", "raw.identifiers", suite, "run-bad", record=False)
    assert not bad.success
    assert {(r["expectation"], r["column"]) for r in bad.failed} == {
        ("expect_column_values_to_not_be_null", "id_type"),
        ("expect_column_values_to_match_regex", "id_type"),
    }
    con.close()
