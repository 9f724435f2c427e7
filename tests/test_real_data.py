"""Acceptance on real shops: the whole graph on a seeded sample of each real export in
../shared/data (Online Retail, The Complete Journey), and the domain invariants a shop relies on.

Select with `pytest -m real_data`. The exports are found in $TESSERA_SHARED_DATA, else in
../shared/data beside the repository; without them these tests skip and say where they looked.
The sampler's own tests run on small hand-made exports and need no shared data.

The invariant queries are plain functions of a DuckDB connection (and MLflow client), so the
before/after figures of issue 32 come from the same definitions as the assertions.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import run_job, use_data_dir

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TESSERA_SHARED_DATA", REPO.parent / "shared" / "data"))
SEED = 42
# customers (households) per sample: enough for every model to train, small enough that the
# whole graph runs in about a minute alone on the 2-core machine
SAMPLE_CUSTOMERS = {"online_retail": 300, "complete_journey": 500}
TOP_RFM_SEGMENTS = ("Champions", "Loyal")
# Online Retail stock codes that are not goods (postage, carriage, fees, manual lines, discounts,
# samples, bad debt); gift vouchers are the codes starting GIFT_. Read from the source, not from
# the mapping, so the check does not trust what it checks.
ONLINE_RETAIL_NOT_GOODS = ("POST", "DOT", "C2", "M", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK", "ADJUST")


# ---------------------------------------------------------------------------------------------
# invariant queries


def snapshot_rows_before_customer(con) -> tuple[int, list[tuple]]:
    """Feature snapshot rows whose customer was not known before the snapshot's cutoff: no signup,
    order or browsing of theirs happened before as_of_date. A customer with no timestamp at all is
    known from the delivery that holds them, so only in the latest snapshot (as of today).
    Returns (count, up to 5 examples)."""
    sql = """
        with known as (
            select customer_key, min(known_at) as first_known_at from (
                select customer_key, first_signup_at as known_at from marts.dim_customers
                union all
                select customer_key, min(ordered_at) from marts.fct_orders where customer_key is not null group by 1
                union all
                select customer_key, min(event_at) from marts.fct_events where customer_key is not null group by 1
            ) as evidence
            where known_at is not null
            group by customer_key
        ),
        today as (select max(as_of_date) as as_of_date from marts.customer_feature_snapshots)
        select s.customer_key, s.as_of_date, k.first_known_at
        from marts.customer_feature_snapshots as s
        cross join today as t
        left join known as k on k.customer_key = s.customer_key
        where k.first_known_at >= cast(s.as_of_date as timestamp)
            or (k.first_known_at is null and s.as_of_date < t.as_of_date)
        order by s.as_of_date, s.customer_key
    """
    rows = con.execute(sql).fetchall()
    return len(rows), rows[:5]


def one_time_buyers_in_top_segments(con) -> dict[str, int]:
    """One-time buyers (one order in the RFM window) per top RFM segment they were put in."""
    return dict(
        con.execute(
            "select rfm_segment, count(*) from marts.customer_rfm where frequency = 1 and rfm_segment in (?, ?) group by 1",
            list(TOP_RFM_SEGMENTS),
        ).fetchall()
    )


def rfm_segment_sizes(con) -> dict[str, int]:
    return dict(
        con.execute("select rfm_segment, count(*) from marts.customer_rfm group by 1 order by 2 desc").fetchall()
    )


def rule_segment_sizes(con) -> dict[str, int]:
    return dict(
        con.execute(
            "select coalesce(rule_segment, '(none)'), count(*) from marts.customer_rule_segments group by 1 order by 2 desc"
        ).fetchall()
    )


def quarantined_by_reason(con) -> dict[tuple[str, str], int]:
    rows = con.execute(
        "select source, reason, count(*) from quarantine.quarantined_records group by 1, 2 order by 3 desc"
    ).fetchall()
    return {(source, reason): n for source, reason, n in rows}


def promotion_decisions(settings) -> list[dict]:
    """Every registered recommender version: the gate's decision and the warm users its
    evaluation had (the run's `users` metric: the primary slice)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    out = []
    for v in client.search_model_versions(f"name = '{settings.mlflow_model_name}'"):
        metrics = client.get_run(v.run_id).data.metrics
        out.append(
            {
                "version": v.version,
                "decision": v.tags.get("gate_decision"),
                "warm_users": int(metrics["users"]) if "users" in metrics else None,
                "reason": v.tags.get("gate_reason"),
            }
        )
    return sorted(out, key=lambda d: int(d["version"]))


def propensity_figures(settings) -> dict[str, dict[str, float]]:
    """AUC and the recency baseline's AUC of the latest run of each propensity target."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("tessera-propensity")
    if experiment is None:
        return {}
    out: dict[str, dict[str, float]] = {}
    for run in client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"]):
        name = run.data.tags.get(mlflow.utils.mlflow_tags.MLFLOW_RUN_NAME, run.info.run_id)
        if name in out:
            continue
        out[name] = {k: v for k, v in run.data.metrics.items() if k in ("auc", "baseline_recency_auc", "eval_rows")}
    return out


def published_products(con) -> set[str]:
    """Every product id in a published table (recommendations and any other published list)."""
    tables = [
        r[0]
        for r in con.execute(
            "select table_name from information_schema.columns where table_schema = 'publish' and column_name = 'product_id'"
        ).fetchall()
    ]
    found: set[str] = set()
    for table in tables:
        found |= {r[0] for r in con.execute(f'select distinct product_id from publish."{table}"').fetchall() if r[0]}
    return found


def not_sellable_products(dataset: str, source: Path) -> set[str]:
    """Product ids of the source that are not goods a shop sells, decided from the source."""
    con = duckdb.connect()
    try:
        if dataset == "online_retail":
            rows = con.execute(
                """
                select upper(trim(StockCode)) as code from read_parquet(?)
                group by 1
                having list_contains(?, upper(trim(StockCode))) or upper(trim(StockCode)) like 'GIFT\\_%' escape '\\'
                    or max(UnitPrice) <= 0
                """,
                [str(source), list(ONLINE_RETAIL_NOT_GOODS)],
            ).fetchall()
        else:
            # what the built-in mapping classifies as not merchandise (fuel, gift cards, coupons, ...)
            from tessera.landing.mapping import map_export

            landing = source.parent / "not_sellable_landing"
            map_export("complete_journey", source, landing)
            rows = con.execute(
                "select product_id from read_parquet(?) where product_type <> 'merchandise'",
                [str(landing / "products" / "products.parquet")],
            ).fetchall()
    finally:
        con.close()
    return {r[0] for r in rows}


def source_line_total(dataset: str, source: Path) -> Decimal:
    """The source's lines summed in its own currency, signed (returns negative), at whole-cent unit
    prices as the landing contract carries them (Online Retail has 4 lines priced 0.001)."""
    con = duckdb.connect()
    try:
        if dataset == "online_retail":
            sql = "select sum(Quantity * cast(round(UnitPrice, 2) as decimal(18, 2))) from read_parquet(?)"
            path = source
        else:
            from tessera.landing.samples import transactions_file

            sql = "select sum(cast(round(sales_value, 2) as decimal(18, 2))) from read_parquet(?)"
            path = transactions_file(source)
        return Decimal(con.execute(sql, [str(path)]).fetchone()[0])
    finally:
        con.close()


def warehouse_money(con) -> dict[str, Decimal]:
    """What the warehouse holds of the order lines, in the order currency (usable lines, signed;
    quarantined lines from their raw content) and in the base currency (the lines' totals and the
    orders' net revenue and non-sale money)."""
    quarantined = con.execute(
        """
        select coalesce(sum(
            try_cast(json_extract_string(raw_content, '$.quantity') as integer)
            * try_cast(json_extract_string(raw_content, '$.unit_price') as decimal(18, 2))
        ), 0)
        from quarantine.quarantined_records
        where source in ('order_items', 'pos_transactions')
        """
    ).fetchone()[0]
    lines = con.execute(
        "select coalesce(sum(quantity * unit_price), 0), coalesce(sum(line_total_base), 0) from marts.fct_order_items"
    ).fetchone()
    orders = con.execute(
        "select coalesce(sum(net_revenue_base), 0), coalesce(sum(other_base), 0) from marts.fct_orders"
    ).fetchone()
    return {
        "quarantined": Decimal(quarantined),
        "usable_lines": Decimal(lines[0]),
        "lines_base": Decimal(lines[1]),
        "net_revenue_base": Decimal(orders[0]),
        "other_base": Decimal(orders[1]),
    }


# ---------------------------------------------------------------------------------------------
# the whole graph on each sample


@dataclass
class RealRun:
    dataset: str
    source: Path  # the sampled export the mapping read
    settings: object
    result: object
    seconds: float

    def con(self, *tables: str):
        """The warehouse, read-only; fails naming the first of `tables` the run did not build."""
        con = duckdb.connect(str(self.settings.duckdb_path), read_only=True)
        for table in tables:
            schema, name = table.split(".")
            built = con.execute(
                "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                [schema, name],
            ).fetchone()[0]
            if not built:
                con.close()
                pytest.fail(f"{self.dataset}: the run did not build {table}, so this invariant cannot be checked")
        return con


def _prepare(dataset: str, work: Path, landing: Path) -> Path:
    from tessera.landing.samples import sample_complete_journey, sample_online_retail

    n = SAMPLE_CUSTOMERS[dataset]
    from tessera.landing.mapping import map_export

    if dataset == "online_retail":
        sample = sample_online_retail(
            SHARED / "online_retail" / "online_retail.parquet", work / "online_retail.parquet", n, SEED
        )
    else:
        sample = sample_complete_journey(SHARED / "complete_journey", work / "complete_journey", n, SEED)
    map_export(dataset, sample.path, landing)
    return sample.path


@pytest.fixture(scope="module", params=["online_retail", "complete_journey"])
def real_run(request, tmp_path_factory):
    dataset = request.param
    if not (SHARED / dataset).is_dir():
        pytest.skip(f"no {dataset} export in {SHARED} (set TESSERA_SHARED_DATA to the folder that holds it)")
    from tessera.settings import load_settings

    work = tmp_path_factory.mktemp(f"real_{dataset}")
    mp = pytest.MonkeyPatch()
    use_data_dir(mp, work / "data")
    settings = load_settings()
    source = _prepare(dataset, work / "source", settings.landing_dir)
    started = time.monotonic()
    result = run_job()
    seconds = time.monotonic() - started
    print(f"\n{dataset}: whole graph on the sample in {seconds:.0f} s")
    yield RealRun(dataset, source, settings, result, seconds)
    mp.undo()


@pytest.mark.graph
@pytest.mark.real_data
def test_the_whole_graph_runs_on_a_sample_of_the_real_export_and_every_check_passes(real_run):
    result = real_run.result
    failed_steps = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    failed_checks = [
        f"{e.asset_check_evaluation_data.asset_key.to_user_string()}:{e.asset_check_evaluation_data.check_name}"
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
    ]
    assert (failed_steps, failed_checks) == ([], []), f"{real_run.dataset}: failed steps and checks"
    assert result.success
    with real_run.con("publish.customer_recommendations", "marts.dim_customers") as con:
        published = con.execute("select count(*) from publish.customer_recommendations").fetchone()[0]
        customers = con.execute("select count(*) from marts.dim_customers").fetchone()[0]
    assert customers >= SAMPLE_CUSTOMERS[real_run.dataset]
    assert published > 0


@pytest.mark.graph
@pytest.mark.real_data
def test_no_feature_snapshot_row_exists_before_its_customer_did(real_run):
    with real_run.con("marts.customer_feature_snapshots", "marts.fct_orders") as con:
        count, examples = snapshot_rows_before_customer(con)
    assert count == 0, f"{real_run.dataset}: {count} snapshot rows before their customer was known, e.g. {examples}"


@pytest.mark.graph
@pytest.mark.real_data
def test_no_one_time_buyer_is_a_champion_or_loyal(real_run):
    with real_run.con("marts.customer_rfm") as con:
        found = one_time_buyers_in_top_segments(con)
        one_time = con.execute("select count(*) from marts.customer_rfm where frequency = 1").fetchone()[0]
    assert one_time > 0  # the invariant is tested on real one-time buyers, not on none
    assert found == {}, f"{real_run.dataset}: one-time buyers in top RFM segments: {found}"


@pytest.mark.graph
@pytest.mark.real_data
def test_no_promotion_is_made_on_fewer_than_the_minimum_number_of_users(real_run):
    settings = real_run.settings
    assert hasattr(settings, "promotion_min_users"), "no minimum number of users for the recommender's promotion gate"
    decisions = promotion_decisions(settings)
    assert decisions, f"{real_run.dataset}: no recommender version was registered"
    too_few = [
        d for d in decisions if d["decision"] == "promoted" and (d["warm_users"] or 0) < settings.promotion_min_users
    ]
    assert too_few == [], (
        f"{real_run.dataset}: promoted on fewer than {settings.promotion_min_users} warm users: {too_few}"
    )


@pytest.mark.graph
@pytest.mark.real_data
def test_revenue_reconciles_with_the_source_net_of_returns_to_the_cent(real_run):
    source_total = source_line_total(real_run.dataset, real_run.source)
    with real_run.con("marts.fct_orders", "marts.fct_order_items", "quarantine.quarantined_records") as con:
        money = warehouse_money(con)
    # every source line is either a usable line of the marts (sales, returns, non-sale lines, all
    # signed) or a quarantined record, in the order currency
    assert money["usable_lines"] + money["quarantined"] == source_total, (real_run.dataset, source_total, money)
    # the orders' net revenue (sales less returns) and non-sale money are exactly their lines
    assert money["net_revenue_base"] + money["other_base"] == money["lines_base"], (real_run.dataset, money)


@pytest.mark.graph
@pytest.mark.real_data
def test_every_published_product_is_a_sellable_product(real_run):
    not_sellable = not_sellable_products(real_run.dataset, real_run.source)
    assert not_sellable  # the sample holds such products: the check has something to catch
    with real_run.con("publish.customer_recommendations") as con:
        published = published_products(con)
    assert published, f"{real_run.dataset}: no product was published"
    assert sorted(published & not_sellable) == [], f"{real_run.dataset}: published products that are not for sale"


# ---------------------------------------------------------------------------------------------
# the sampler, on hand-made exports


def _online_retail_export(path: Path) -> Path:
    customers = [float(c) for c in range(1, 41)]
    rows = {
        "InvoiceNo": [],
        "StockCode": [],
        "Description": [],
        "Quantity": [],
        "InvoiceDate": [],
        "UnitPrice": [],
        "CustomerID": [],
        "Country": [],
    }
    for i, customer in enumerate(customers + [None] * 20):
        for line in range(3):
            rows["InvoiceNo"].append(f"5{i:04d}")
            rows["StockCode"].append(f"8500{line}")
            rows["Description"].append("MUG")
            rows["Quantity"].append(line + 1)
            rows["InvoiceDate"].append(datetime(2011, 1, 1) + timedelta(days=i))
            rows["UnitPrice"].append(1.25)
            rows["CustomerID"].append(customer)
            rows["Country"].append("United Kingdom")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), path)
    return path


def test_an_online_retail_sample_keeps_every_line_of_its_customers_and_a_proportional_share_of_guests(tmp_path):
    from tessera.landing.samples import sample_online_retail

    source = _online_retail_export(tmp_path / "or.parquet")
    sample = sample_online_retail(source, tmp_path / "s.parquet", customers=10, seed=SEED)
    table = pq.read_table(sample.path).to_pylist()
    kept = {r["CustomerID"] for r in table if r["CustomerID"] is not None}
    guests = {r["InvoiceNo"] for r in table if r["CustomerID"] is None}
    assert (sample.customers, sample.customers_in_source, len(kept)) == (10, 40, 10)
    assert len(guests) == 5  # 20 guest invoices x 10 / 40 customers
    # every line of a kept customer or invoice: 3 each
    assert sample.rows == len(table) == 3 * (10 + 5)
    assert sample.rows_in_source == 180


def test_the_same_seed_gives_the_same_sample_and_a_larger_sample_contains_a_smaller_one(tmp_path):
    from tessera.landing.samples import sample_online_retail

    source = _online_retail_export(tmp_path / "or.parquet")

    def kept(n, seed, name):
        path = sample_online_retail(source, tmp_path / name, customers=n, seed=seed).path
        return {r["CustomerID"] for r in pq.read_table(path).to_pylist() if r["CustomerID"] is not None}

    assert kept(10, SEED, "a.parquet") == kept(10, SEED, "b.parquet")
    assert kept(10, SEED, "a.parquet") < kept(20, SEED, "c.parquet")
    assert kept(10, SEED, "a.parquet") != kept(10, SEED + 1, "d.parquet")


def test_a_sample_keeps_the_source_row_order_so_the_same_seed_gives_the_same_file(tmp_path):
    # regression: the sample was written in the order a multi-threaded filtered scan returned it,
    # a different order on each run; the Online Retail mapping keeps a product's first description,
    # so four products of a 1,000-customer sample changed name and category between two runs
    import duckdb

    from tessera.landing.samples import sample_online_retail

    source = tmp_path / "big.parquet"
    duckdb.sql(
        "select 'I' || (range // 4) as InvoiceNo, 'S' || (range % 97) as StockCode, range as line, "
        "case when range % 11 = 0 then null else 10000 + (range // 4) % 5000 end as CustomerID "
        "from range(400000)"
    ).write_parquet(str(source), row_group_size=4096)
    paths = [sample_online_retail(source, tmp_path / f"s{i}.parquet", customers=2500, seed=SEED).path for i in (1, 2)]
    lines = [[r[0] for r in duckdb.sql(f"select line from read_parquet('{path}')").fetchall()] for path in paths]
    assert lines[0] == lines[1] == sorted(lines[0]) and len(lines[0]) > 100_000
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_a_complete_journey_sample_keeps_its_households_baskets_and_demographics(tmp_path):
    from tessera.landing.samples import sample_complete_journey
    from tests.test_complete_journey import write_export

    export = write_export(tmp_path / "export")
    sample = sample_complete_journey(export, tmp_path / "sample", households=2, seed=SEED)
    tx = pq.read_table(sample.path / "transactions_sample.parquet").to_pylist()
    households = {r["household_id"] for r in tx}
    assert len(households) == 2 and sample.customers == 2 and sample.customers_in_source == 3
    # all of each kept household's lines (household 1 has 3, 2 has 2, 3 has 1)
    assert sample.rows == len(tx) == sum({1: 3, 2: 2, 3: 1}[h] for h in households)
    demographics = {r["household_id"] for r in pq.read_table(sample.path / "demographics.parquet").to_pylist()}
    assert demographics == households & {1, 4}
    assert pq.read_table(sample.path / "products.parquet").num_rows == 6


def test_a_sample_of_no_customers_is_refused(tmp_path):
    from tessera.landing.samples import sample_online_retail

    with pytest.raises(ValueError, match="at least one customer, not 0"):
        sample_online_retail(
            _online_retail_export(tmp_path / "or.parquet"), tmp_path / "s.parquet", customers=0, seed=SEED
        )
