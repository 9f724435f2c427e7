"""Map the UCI Online Retail export onto tessera's landing contract.

Source: UCI Machine Learning Repository, dataset 352 "Online Retail" (Chen, Sain and Guo, 2012),
CC BY 4.0; 541,909 invoice lines of a UK online gift retailer, 2010-12-01 to 2011-12-09.

Mapping decisions (documented in docs/online_retail.md):
- customers: one profile per CustomerID, country from its most frequent invoice country. The
  export carries no names, emails or phones; none are invented.
- products: one per StockCode; name = most frequent description; category = the description's last
  word when at least 20 products share it (e.g. "holder", "bag", "mug"), else "other"; price =
  median positive unit price (0 for a code never sold at a positive price); active = sold in the
  last 180 days of the export. Service codes are in the catalogue with the product_type that says
  what they are (SERVICE_TYPES: postage and carriage are shipping; bank charges, marketplace fees
  and charity commission are fees; manual lines, discounts, samples and bad-debt adjustments are
  adjustments; gift vouchers are vouchers), so their lines are kept as lines that are not customer
  sales, never published as products and never counted as quarantined.
- orders / order_items: invoices with a CustomerID. An invoice number starting with "C" is a
  credit note: an order with status returned whose lines keep their negative quantities, so
  revenue is net of it.
- pos_transactions: invoices without a CustomerID become unidentified receipts (no card, email
  or phone), because the contract's orders need a customer; returns keep negative quantities, and
  negative lines at price 0 (stock write-offs: "damaged", "lost", "check") become stock
  adjustments in the pipeline, not returns.
- events, email_events, privacy: not in the export; their folders stay empty.
InvoiceDate is UK local time and is written with its Europe/London offset.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import polars as pl

from tessera.landing.frames import write_landing_file

# Stock codes that are not goods, with the contract's product_type (tessera.landing.contract.PRODUCT_TYPES).
# PADS ("pads to match all cushions") is sold like any product and stays merchandise.
SERVICE_TYPES = {
    "POST": "shipping",
    "DOT": "shipping",
    "C2": "shipping",
    "BANK CHARGES": "fee",
    "AMAZONFEE": "fee",
    "CRUK": "fee",
    "M": "adjustment",
    "D": "adjustment",
    "S": "adjustment",
    "B": "adjustment",
    "ADJUST": "adjustment",
}
# gift vouchers: gift_0001_10 ... gift_0001_50 (stock codes are upper-cased on reading)
VOUCHER_PREFIX = "GIFT_"
MIN_CATEGORY_PRODUCTS = 20
ACTIVE_DAYS = 180


LONDON = "Europe/London"


def _iso_london(ts: pl.Expr) -> pl.Expr:
    """UK wall-clock times as ISO 8601 with their Europe/London offset. The hour repeated when the
    clocks go back reads as GMT (the later instant); a time in the hour skipped when they go
    forward moves to the end of that hour."""
    local = ts.dt.replace_time_zone(LONDON, ambiguous="latest", non_existent="null")
    shifted = (ts.dt.truncate("1h") + pl.duration(hours=1)).dt.replace_time_zone(
        LONDON, ambiguous="latest", non_existent="null"
    )
    return pl.when(local.is_null()).then(shifted).otherwise(local).dt.strftime("%Y-%m-%dT%H:%M:%S%:z")


def _most_frequent(frame: pl.DataFrame, key: str, value: str) -> pl.DataFrame:
    """Per `key`, its most frequent non-null `value` (ties: the one seen first)."""
    return (
        frame.filter(pl.col(value).is_not_null())
        .group_by(key, value)
        .agg(n=pl.len(), seen=pl.col("_row").min())
        .sort([key, "n", "seen"], descending=[False, True, False])
        .unique(key, keep="first", maintain_order=True)
        .select(key, value)
    )


def _median(values: pl.Expr) -> pl.Expr:
    """The median as numpy computes it, the mean of the two middle values ((a + b) / 2): polars'
    interpolation rounds differently, and the price rounded to cents then differed (1.02 for 1.01)."""
    ordered = values.sort()
    n = values.len()
    return (ordered.get((n - 1) // 2) + ordered.get(n // 2)) / 2


def map_online_retail(source: Path | str, landing_dir: Path | str) -> dict[str, int]:
    df = pl.read_parquet(source)
    expected = {
        "InvoiceNo",
        "StockCode",
        "Description",
        "Quantity",
        "InvoiceDate",
        "UnitPrice",
        "CustomerID",
        "Country",
    }
    missing = expected - set(df.columns)
    if missing:
        raise ValueError(f"{source}: not the Online Retail export, missing columns {sorted(missing)}")
    landing_dir = Path(landing_dir)
    if landing_dir.exists():
        shutil.rmtree(landing_dir)
    df = df.with_row_index("_row").with_columns(
        pl.col("InvoiceNo").cast(pl.String).str.strip_chars(),
        pl.col("StockCode").cast(pl.String).str.strip_chars().str.to_uppercase(),
        pl.col("InvoiceDate").cast(pl.Datetime("us")),
    )
    has_customer = pl.col("CustomerID").is_not_null()
    df = df.with_columns(
        ts=_iso_london(pl.col("InvoiceDate")),
        line_no=pl.int_range(1, pl.len() + 1).over("InvoiceNo"),
        customer_id=pl.when(has_customer).then("UCI" + pl.col("CustomerID").cast(pl.Int64).cast(pl.String)),
    )

    rows: dict[str, int] = {}

    known = df.filter(has_customer)
    customers = (
        _most_frequent(known, "customer_id", "Country")
        .join(
            known.group_by("customer_id").agg(
                signup_at=_iso_london(pl.col("InvoiceDate").min()), updated_at=_iso_london(pl.col("InvoiceDate").max())
            ),
            on="customer_id",
        )
        .select("customer_id", country="Country", signup_at="signup_at", updated_at="updated_at")
        .sort("customer_id")
    )
    rows["customers"] = write_landing_file(customers, landing_dir / "customers" / "customers.csv")

    code = pl.col("StockCode")
    words = pl.col("name").str.to_lowercase().str.replace_all("[^a-z ]", " ").str.split(" ")
    last_word = words.list.eval(pl.element().filter(pl.element() != "")).list.last().fill_null("other")
    service_type = code.replace_strict(SERVICE_TYPES, default=None, return_dtype=pl.String)
    cutoff = df["InvoiceDate"].max() - timedelta(days=ACTIVE_DAYS)
    sold = df.group_by("StockCode").agg(first_sold=pl.col("InvoiceDate").min(), last_sold=pl.col("InvoiceDate").max())
    positive = df.filter((pl.col("Quantity") > 0) & (pl.col("UnitPrice") > 0))
    products = (
        sold.join(_most_frequent(df, "StockCode", "Description"), on="StockCode", how="left")
        .join(positive.group_by("StockCode").agg(price=_median(pl.col("UnitPrice"))), on="StockCode", how="left")
        .sort("StockCode")
        .rename({"Description": "name"})
        .with_columns(last_word=last_word)
        .with_columns(
            category=pl.when(pl.len().over("last_word") >= MIN_CATEGORY_PRODUCTS)
            .then("last_word")
            .otherwise(pl.lit("other")),
            product_type=pl.when(service_type.is_null() & code.str.starts_with(VOUCHER_PREFIX))
            .then(pl.lit("voucher"))
            .otherwise(service_type.fill_null("merchandise")),
        )
    )
    # rounded as numpy rounds (pandas' Series.round), so the CSV text stays the same
    price = products["price"].fill_null(0.0).to_numpy().round(2)
    products = products.select(
        product_id="StockCode",
        name="name",
        category="category",
        brand=pl.lit(None, pl.String),
        price=pl.Series(price),
        currency=pl.lit("GBP"),
        is_active=pl.when(pl.col("last_sold") >= cutoff).then(pl.lit("true")).otherwise(pl.lit("false")),
        created_at=_iso_london(pl.col("first_sold")),
        product_type="product_type",
    )
    rows["products"] = write_landing_file(products, landing_dir / "products" / "products.csv")

    invoice = pl.col("InvoiceNo")
    orders = known.unique("InvoiceNo", keep="first", maintain_order=True).select(
        order_id=invoice,
        customer_id="customer_id",
        channel=pl.lit("web"),
        status=pl.when(invoice.str.starts_with("C")).then(pl.lit("returned")).otherwise(pl.lit("completed")),
        currency=pl.lit("GBP"),
        ordered_at="ts",
    )
    rows["orders"] = write_landing_file(orders, landing_dir / "orders" / "orders.csv")
    line_id = invoice + "-" + pl.col("line_no").cast(pl.String)
    items = known.select(
        order_item_id=line_id,
        order_id=invoice,
        product_id=code,
        quantity="Quantity",
        unit_price="UnitPrice",
    )
    rows["order_items"] = write_landing_file(items, landing_dir / "order_items" / "order_items.parquet")

    pos = df.filter(~has_customer).select(
        transaction_line_id=line_id,
        receipt_id=invoice,
        store_id=pl.lit("ONLINE-GUEST"),
        loyalty_card=pl.lit(None),
        email=pl.lit(None),
        phone=pl.lit(None),
        product_id=code,
        quantity="Quantity",
        unit_price="UnitPrice",
        currency=pl.lit("GBP"),
        transacted_at="ts",
    )
    rows["pos_transactions"] = write_landing_file(pos, landing_dir / "pos_transactions" / "pos_transactions.parquet")
    return rows
