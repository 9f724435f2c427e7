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
from pathlib import Path

import numpy as np
import pandas as pd

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


def _iso_london(ts: pd.Series) -> pd.Series:
    local = ts.dt.tz_localize("Europe/London", ambiguous=False, nonexistent="shift_forward")
    text = local.dt.strftime("%Y-%m-%dT%H:%M:%S%z")
    return text.str[:-2] + ":" + text.str[-2:]


def map_online_retail(source: Path | str, landing_dir: Path | str) -> dict[str, int]:
    df = pd.read_parquet(source)
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
    df = df.reset_index(drop=True)
    df["InvoiceNo"] = df["InvoiceNo"].astype(str).str.strip()
    df["StockCode"] = df["StockCode"].astype(str).str.strip().str.upper()
    df["InvoiceDate"] = pd.to_datetime(df["InvoiceDate"])
    df["ts"] = _iso_london(df["InvoiceDate"])
    df["line_no"] = df.groupby("InvoiceNo").cumcount() + 1
    has_customer = df["CustomerID"].notna()
    df["customer_id"] = np.where(has_customer, "UCI" + df["CustomerID"].fillna(0).astype(np.int64).astype(str), None)

    rows: dict[str, int] = {}

    known = df[has_customer]
    country = known.groupby("customer_id")["Country"].agg(lambda s: s.value_counts().index[0])
    first = known.groupby("customer_id")["InvoiceDate"].min()
    last = known.groupby("customer_id")["InvoiceDate"].max()
    customers = pd.DataFrame(
        {
            "customer_id": country.index,
            "country": country.to_numpy(),
            "signup_at": _iso_london(first.loc[country.index].reset_index(drop=True)).to_numpy(),
            "updated_at": _iso_london(last.loc[country.index].reset_index(drop=True)).to_numpy(),
        }
    )
    rows["customers"] = _write(customers, landing_dir / "customers" / "customers.csv")

    name = df.groupby("StockCode")["Description"].agg(lambda s: s.value_counts().index[0])
    last_word = name.str.lower().str.replace(r"[^a-z ]", " ", regex=True).str.split().str[-1].fillna("other")
    counts = last_word.value_counts()
    category = last_word.where(last_word.map(counts) >= MIN_CATEGORY_PRODUCTS, "other")
    positive = df[(df["Quantity"] > 0) & (df["UnitPrice"] > 0)]
    price = positive.groupby("StockCode")["UnitPrice"].median().reindex(name.index).fillna(0.0)
    codes = pd.Series(name.index, index=name.index)
    product_type = codes.map(SERVICE_TYPES)
    product_type = product_type.where(product_type.notna() | ~codes.str.startswith(VOUCHER_PREFIX), "voucher")
    product_type = product_type.fillna("merchandise")
    cutoff = df["InvoiceDate"].max() - pd.Timedelta(days=ACTIVE_DAYS)
    last_sold = df.groupby("StockCode")["InvoiceDate"].max().reindex(name.index)
    first_sold = df.groupby("StockCode")["InvoiceDate"].min().reindex(name.index)
    products = pd.DataFrame(
        {
            "product_id": name.index,
            "name": name.to_numpy(),
            "category": category.to_numpy(),
            "brand": None,
            "price": price.round(2).to_numpy(),
            "currency": "GBP",
            "is_active": np.where(last_sold >= cutoff, "true", "false"),
            "created_at": _iso_london(first_sold.reset_index(drop=True)).to_numpy(),
            "product_type": product_type.to_numpy(),
        }
    )
    rows["products"] = _write(products, landing_dir / "products" / "products.csv")

    invoices = known.drop_duplicates("InvoiceNo")
    orders = pd.DataFrame(
        {
            "order_id": invoices["InvoiceNo"],
            "customer_id": invoices["customer_id"],
            "channel": "web",
            "status": np.where(invoices["InvoiceNo"].str.startswith("C"), "returned", "completed"),
            "currency": "GBP",
            "ordered_at": invoices["ts"],
        }
    )
    rows["orders"] = _write(orders, landing_dir / "orders" / "orders.csv")
    items = pd.DataFrame(
        {
            "order_item_id": known["InvoiceNo"] + "-" + known["line_no"].astype(str),
            "order_id": known["InvoiceNo"],
            "product_id": known["StockCode"],
            "quantity": known["Quantity"],
            "unit_price": known["UnitPrice"],
        }
    )
    rows["order_items"] = _write(items, landing_dir / "order_items" / "order_items.parquet")

    guests = df[~has_customer]
    pos = pd.DataFrame(
        {
            "transaction_line_id": guests["InvoiceNo"] + "-" + guests["line_no"].astype(str),
            "receipt_id": guests["InvoiceNo"],
            "store_id": "ONLINE-GUEST",
            "loyalty_card": None,
            "email": None,
            "phone": None,
            "product_id": guests["StockCode"],
            "quantity": guests["Quantity"],
            "unit_price": guests["UnitPrice"],
            "currency": "GBP",
            "transacted_at": guests["ts"],
        }
    )
    rows["pos_transactions"] = _write(pos, landing_dir / "pos_transactions" / "pos_transactions.parquet")
    return rows


def _write(frame: pd.DataFrame, path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return len(frame)
