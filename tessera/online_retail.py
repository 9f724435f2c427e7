"""Map the UCI Online Retail export onto tessera's landing contract.

Source: UCI Machine Learning Repository, dataset 352 "Online Retail" (Chen, Sain and Guo, 2012),
CC BY 4.0; 541,909 invoice lines of a UK online gift retailer, 2010-12-01 to 2011-12-09.

Mapping decisions (documented in docs/online_retail.md):
- customers: one profile per CustomerID, country from its most frequent invoice country. The
  export carries no names, emails or phones; none are invented.
- products: one per StockCode; name = most frequent description; category = the description's last
  word when at least 20 products share it (e.g. "holder", "bag", "mug"), else "other"; price =
  median positive unit price; active = sold in the last 180 days of the export. Service codes
  (POST, DOT, M, BANK CHARGES, ...) are not products: their lines are rejected in staging with the
  reason "unknown product", so they are counted, not lost.
- orders / order_items: invoices with a CustomerID. An invoice number starting with "C" is a
  cancellation (status cancelled; its negative quantities are rejected as order lines).
- pos_transactions: invoices without a CustomerID become unidentified receipts (no card, email
  or phone), because the contract's orders need a customer; returns keep negative quantities.
- events, email_events, privacy: not in the export; their folders stay empty.
InvoiceDate is UK local time and is written with its Europe/London offset.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

SERVICE_CODES = {"POST", "DOT", "M", "C2", "D", "S", "B", "CRUK", "PADS", "AMAZONFEE", "BANK CHARGES", "ADJUST"}
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

    goods = df[~df["StockCode"].isin(SERVICE_CODES)]
    name = goods.groupby("StockCode")["Description"].agg(lambda s: s.value_counts().index[0])
    last_word = name.str.lower().str.replace(r"[^a-z ]", " ", regex=True).str.split().str[-1].fillna("other")
    counts = last_word.value_counts()
    category = last_word.where(last_word.map(counts) >= MIN_CATEGORY_PRODUCTS, "other")
    positive = goods[(goods["Quantity"] > 0) & (goods["UnitPrice"] > 0)]
    price = positive.groupby("StockCode")["UnitPrice"].median().reindex(name.index)
    cutoff = df["InvoiceDate"].max() - pd.Timedelta(days=ACTIVE_DAYS)
    last_sold = goods.groupby("StockCode")["InvoiceDate"].max().reindex(name.index)
    first_sold = goods.groupby("StockCode")["InvoiceDate"].min().reindex(name.index)
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
        }
    )
    # A product that never sold at a positive price has no list price: leave it out of the
    # catalogue, so its lines are counted as unknown products in staging.
    products = products[products["price"].notna()]
    rows["products"] = _write(products, landing_dir / "products" / "products.csv")

    invoices = known.drop_duplicates("InvoiceNo")
    orders = pd.DataFrame(
        {
            "order_id": invoices["InvoiceNo"],
            "customer_id": invoices["customer_id"],
            "channel": "web",
            "status": np.where(invoices["InvoiceNo"].str.startswith("C"), "cancelled", "completed"),
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
