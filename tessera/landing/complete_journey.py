"""Map The Complete Journey (a grocery retailer's households and baskets) onto the landing contract.

Source: the tables of the R package `completejourney` as Parquet (../shared/data/complete_journey,
see its README): 2,469 households of a US grocery retailer over 2017, CC0, provenance unconfirmed.
Mapping decisions (docs/complete_journey.md says why):

- customers: one CRM profile per household (``CJ<household_id>``), from the transactions and
  from demographics. The household's loyalty card is ``CARD<household_id>``. Country ``US`` (a US
  retailer that sells in USD). The export has no names, emails, phones, birth dates or signup
  times: none are invented (signup_at and updated_at stay empty). Demographic bands (age, income,
  ...) have no landing column and are not loaded.
- pos_transactions: every basket is a store receipt (``receipt_id`` = basket_id) whose buyer is
  identified only by the household's loyalty card, so identity resolution links it to the profile.
  One receipt line per transaction line, in file order within the basket.
- amounts: ``sales_value`` is what the retailer received for the line, after its loyalty
  discount (``retail_disc``) and its match of manufacturer coupons (``coupon_match_disc``); the
  line's unit price is sales_value / quantity, in USD. The contract's unit price has whole cents,
  so a line whose amount does not divide by its quantity is written as two lines of the same
  product: quantity - 1 units at the amount's whole-cent share, and one unit carrying the rest.
  Quantities and amounts both add up to the source, to the cent.
- fuel quantities are not units (sales_value / quantity is below one cent, e.g. 10,514 for
  $24.91): such a line is written as one unit at the line amount.
- a line with quantity 0 is written as delivered, with the line amount as its unit price:
  staging quarantines it as 'zero quantity', and its amount stays visible there.
- a negative sales_value (a refund; none in the 2017 export) is a return: negative quantity,
  positive unit price.
- products: every product sold at least once in the transactions (others have no price). name
  = product_type and package_size (the export has no product names); category =
  product_category, else department; brand as delivered (the export only says National or
  Private); price = median shelf price per unit, (sales_value + retail_disc +
  coupon_match_disc) / quantity, over lines with a positive shelf amount (0 when there is none);
  active = sold in the last 180 days of the export; created_at = its first sale.
- product_type (PRODUCT_TYPE_SQL): fuel and postal services are 'service', gift cards
  'voucher', coupons, manual key-ring entries and store supplies 'adjustment', donations 'fee';
  everything else 'merchandise'. The pipeline keeps their lines as money that is not a customer
  sale and never publishes them as products. Products in the transactions but not in
  products.parquet stay out of the catalogue: staging quarantines their lines as 'unknown product'.
- timestamps are delivered in UTC and written as ISO 8601 with +00:00.
- orders, order_items, events, email_events, privacy: not in the export; not written.

The work is done in DuckDB. The landing folder is replaced only after every new file is written
(into a temporary folder beside it, then swapped in).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import duckdb
import polars as pl

from tessera.landing.contract import SOURCES_BY_NAME
from tessera.landing.frames import write_landing_file

CURRENCY = "USD"
COUNTRY = "US"
ACTIVE_DAYS = 180

TRANSACTIONS_FILES = ("transactions.parquet", "transactions_sample.parquet")
PRODUCTS_FILE = "products.parquet"
DEMOGRAPHICS_FILE = "demographics.parquet"

TRANSACTION_COLUMNS = (
    "household_id",
    "store_id",
    "basket_id",
    "product_id",
    "quantity",
    "sales_value",
    "retail_disc",
    "coupon_match_disc",
    "transaction_timestamp",
)
PRODUCT_COLUMNS = ("product_id", "department", "brand", "product_category", "product_type", "package_size")
DEMOGRAPHIC_COLUMNS = ("household_id",)

# What a catalogue row sells, as the contract's products.product_type: 'merchandise', or a line
# that is not a sale of goods the shop recommends. One place, read by the mapping and the tests.
PRODUCT_TYPE_SQL = """
    case
        when upper(p.product_type) like 'GASOLINE%' or upper(p.department) in ('FUEL', 'KIOSK-GAS') then 'service'
        when upper(p.product_type) like '%GIFT CARD%' then 'voucher'
        when upper(p.department) = 'COUPON' or upper(p.product_category) like 'COUPONS/%' then 'adjustment'
        when upper(p.product_type) in ('MISC SALES TRANS', 'PRODUCE DEPT KEY RING', 'FLORAL DEPT KEY RING')
            then 'adjustment'
        when upper(p.product_type) = 'CENTRAL SUPPLIES' or upper(p.department) = 'CNTRL/STORE SUP' then 'adjustment'
        when upper(p.department) = 'POSTAL CENTER' then 'service'
        when upper(p.department) = 'CHARITABLE CONT' then 'fee'
        else 'merchandise'
    end
"""


class CompleteJourneyError(ValueError):
    """The source folder is not the Complete Journey export, or holds a value the mapping has no rule for."""


def transactions_file(source_dir: Path) -> Path:
    """The transactions table in `source_dir`: the full one or the shared sample, never both."""
    found = [source_dir / name for name in TRANSACTIONS_FILES if (source_dir / name).exists()]
    if not found:
        raise CompleteJourneyError(
            f"{source_dir}: no transactions file (expected one of {', '.join(TRANSACTIONS_FILES)})"
        )
    if len(found) > 1:
        raise CompleteJourneyError(f"{source_dir}: both {found[0].name} and {found[1].name} exist; keep the one to map")
    return found[0]


def _require_columns(con: duckdb.DuckDBPyConnection, path: Path, columns: tuple[str, ...]) -> None:
    if not path.exists():
        raise CompleteJourneyError(f"{path}: file not found")
    present = {row[0] for row in con.execute("describe select * from read_parquet(?)", [str(path)]).fetchall()}
    missing = [c for c in columns if c not in present]
    if missing:
        raise CompleteJourneyError(f"{path}: missing column(s) {', '.join(missing)}")


def _fail_on(con: duckdb.DuckDBPyConnection, path: Path, column: str, condition: str, rule: str) -> None:
    """Raise naming the file, column and first offending value when `condition` holds on any row of tx."""
    row = con.execute(f"select {column}, count(*) over () from tx where {condition} limit 1").fetchone()
    if row is not None:
        raise CompleteJourneyError(f"{path}: column {column} has {row[1]:,} value(s) {rule}, e.g. {row[0]!r}")


def map_complete_journey(source_dir: Path | str, landing_dir: Path | str) -> dict[str, int]:
    """Write customers, products and pos_transactions landing files for the export in `source_dir`
    into `landing_dir` (replaced whole once the new files are written). Returns rows per source."""
    source_dir = Path(source_dir)
    landing_dir = Path(landing_dir)
    tx_path = transactions_file(source_dir)
    products_path = source_dir / PRODUCTS_FILE
    demographics_path = source_dir / DEMOGRAPHICS_FILE

    con = duckdb.connect()
    try:
        con.execute("set TimeZone = 'UTC'")
        _require_columns(con, tx_path, TRANSACTION_COLUMNS)
        _require_columns(con, products_path, PRODUCT_COLUMNS)
        _require_columns(con, demographics_path, DEMOGRAPHIC_COLUMNS)
        con.execute(
            """
            create temp table tx as
            select
                cast(cast(household_id as bigint) as varchar) as household_id,
                cast(cast(store_id as bigint) as varchar) as store_id,
                cast(cast(basket_id as bigint) as varchar) as basket_id,
                cast(cast(product_id as bigint) as varchar) as product_id,
                quantity,
                sales_value,
                retail_disc,
                coupon_match_disc,
                cast(transaction_timestamp as varchar) as transaction_timestamp,
                try_cast(transaction_timestamp as timestamptz) as transacted_at,
                file_row_number
            from read_parquet(?, file_row_number = true)
            """,
            [str(tx_path)],
        )
        _fail_on(con, tx_path, "quantity", "quantity <> trunc(quantity)", "that are not whole units")
        _fail_on(con, tx_path, "sales_value", "sales_value is null", "missing")
        _fail_on(
            con,
            tx_path,
            "sales_value",
            "abs(sales_value * 100 - round(sales_value * 100)) > 1e-6",
            "with fractions of a cent",
        )
        _fail_on(con, tx_path, "quantity", "quantity < 0", "below zero (a return is a negative sales_value)")
        con.execute(
            "create temp table products_src as select *, cast(cast(product_id as bigint) as varchar) as pid "
            "from read_parquet(?)",
            [str(products_path)],
        )
        con.execute(
            "create temp table households as "
            "select household_id from tx where household_id is not null "
            "union select cast(cast(household_id as bigint) as varchar) from read_parquet(?) where household_id is not null",
            [str(demographics_path)],
        )
        tables = {
            "customers": _customers(con),
            "products": _products(con),
            "pos_transactions": _pos_transactions(con),
        }
    finally:
        con.close()
    return _swap_in(tables, landing_dir)


def _iso_utc(column: str) -> str:
    """SQL: a UTC timestamptz as ISO 8601 text with +00:00, with microseconds only when it has some."""
    return (
        f"case when epoch_us({column}) % 1000000 = 0 then strftime({column}, '%Y-%m-%dT%H:%M:%S+00:00') "
        f"else strftime({column}, '%Y-%m-%dT%H:%M:%S.%f+00:00') end"
    )


def _customers(con: duckdb.DuckDBPyConnection):
    return con.sql(
        """
        select
            'CJ' || household_id as customer_id,
            ? as country,
            'CARD' || household_id as loyalty_card
        from households
        order by cast(household_id as bigint)
        """,
        params=[COUNTRY],
    ).pl()


def _products(con: duckdb.DuckDBPyConnection):
    return con.sql(
        f"""
        with sold as (
            select
                product_id,
                min(transacted_at) as first_sold_at,
                max(transacted_at) as last_sold_at,
                median(
                    case when quantity > 0 and sales_value + coalesce(retail_disc, 0) + coalesce(coupon_match_disc, 0) > 0
                        then (sales_value + coalesce(retail_disc, 0) + coalesce(coupon_match_disc, 0)) / quantity
                    end
                ) as shelf_price
            from tx
            group by product_id
        ),
        export_end as (select max(transacted_at) as last_at from tx)
        select
            p.pid as product_id,
            nullif(trim(concat_ws(' ', p.product_type, p.package_size)), '') as name,
            coalesce(p.product_category, p.department) as category,
            p.brand,
            cast(cast(round(coalesce(s.shelf_price, 0), 2) as decimal(18, 2)) as varchar) as price,
            ? as currency,
            case when s.last_sold_at >= e.last_at - to_days(?) then 'true' else 'false' end as is_active,
            {PRODUCT_TYPE_SQL} as product_type,
            {_iso_utc("s.first_sold_at")} as created_at
        from products_src as p
        inner join sold as s on s.product_id = p.pid
        cross join export_end as e
        order by cast(p.pid as bigint)
        """,
        params=[CURRENCY, ACTIVE_DAYS],
    ).pl()


def _pos_transactions(con: duckdb.DuckDBPyConnection):
    """One receipt line per source line, two where the amount does not split into whole cents."""
    return con.sql(
        f"""
        with lines as (
            select
                *,
                row_number() over (partition by basket_id order by file_row_number) as line_no,
                cast(round(abs(sales_value) * 100) as bigint) as cents,
                cast(quantity as bigint) as units,
                case when sales_value < 0 then -1 else 1 end as sign
            from tx
        ),
        shaped as (
            select
                *,
                case
                    when units = 0 then 'as delivered'
                    when cents > 0 and cents < units then 'one unit'
                    when cents % units = 0 then 'whole'
                    else 'split'
                end as shape
            from lines
        ),
        parts as (
            -- the line itself (all of it, or its quantity - 1 units at the whole-cent share)
            select
                basket_id || '-' || line_no as transaction_line_id,
                *,
                case shape when 'one unit' then 1 when 'split' then units - 1 else units end as part_units,
                case shape
                    when 'as delivered' then cents
                    when 'one unit' then cents
                    else cents // units
                end as part_cents
            from shaped
            union all
            -- the split line's last unit, carrying the remaining cents
            select
                basket_id || '-' || line_no || '-2' as transaction_line_id,
                *,
                1 as part_units,
                cents - (units - 1) * (cents // units) as part_cents
            from shaped
            where shape = 'split'
        )
        select
            transaction_line_id,
            basket_id as receipt_id,
            store_id,
            'CARD' || household_id as loyalty_card,
            cast(null as varchar) as email,
            cast(null as varchar) as phone,
            product_id,
            cast(sign * part_units as varchar) as quantity,
            cast(cast(part_cents / 100.0 as decimal(18, 2)) as varchar) as unit_price,
            ? as currency,
            coalesce({_iso_utc("transacted_at")}, transaction_timestamp) as transacted_at
        from parts
        order by cast(basket_id as bigint), line_no, transaction_line_id
        """,
        params=[CURRENCY],
    ).pl()


def _contract_shape(table: pl.DataFrame, source: str) -> pl.DataFrame:
    """Every contract column of `source`, in contract order, as text: the ones the export does not
    have are written empty, so the file says they are absent rather than forgotten."""
    columns = SOURCES_BY_NAME[source].column_names
    extra = set(table.columns) - set(columns)
    if extra:
        raise ValueError(f"{source}: the mapping produced columns outside the contract: {sorted(extra)}")
    return table.select(
        pl.col(name).cast(pl.String) if name in table.columns else pl.lit(None, pl.String).alias(name)
        for name in columns
    )


def _swap_in(tables: dict, landing_dir: Path) -> dict[str, int]:
    """Write every table into a new folder beside `landing_dir`, then put it in its place: the old
    landing folder is removed only once the new one is complete."""
    landing_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{landing_dir.name}.new-", dir=landing_dir.parent))
    try:
        rows = {}
        for source, table in tables.items():
            rows[source] = write_landing_file(_contract_shape(table, source), staging / source / f"{source}.parquet")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if landing_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{landing_dir.name}.old-", dir=landing_dir.parent))
        old.rmdir()
        landing_dir.rename(old)
    staging.rename(landing_dir)
    if old is not None:
        shutil.rmtree(old)
    return rows
