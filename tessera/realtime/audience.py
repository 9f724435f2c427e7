"""The trigger audience: what the realtime trigger worker knows of each customer, from the warehouse.

The batch graph decides with the warehouse; the trigger worker decides per event and cannot query
it (the DuckDB file is locked by the pipeline, and a query per event would be slow). So after a
batch run the warehouse's view of every customer is exported (`tessera realtime audience`; the
same function a Dagster asset can call) into an internal folder, never the publish directory:

    $TESSERA_DATA_DIR/realtime/trigger_audience/
        CURRENT                    the version folder readers use (written aside, renamed over)
        <version>/visitors.parquet visitor ("u:<CRM customer_id>" or "a:<cookie>", the ids
                                   tessera.realtime.state uses) -> customer_key, sorted by visitor
        <version>/customers.parquet per customer (audiences.active_customers: no erasure request):
                                   customer_key, customer_pkey, user_ids (every CRM id of the
                                   customer, for the suppression keys), reach_<channel> (decide.REACH),
                                   granted (the "channel/purpose" consents granted,
                                   marts.customer_consents), the template fields of
                                   templates.CUSTOMER, recommendations (top 3 active, with names)
        <version>/products.parquet product_id, product_name, category, is_active, related (top 3
                                   bought_together of ml.product_recommendations, with names)
        <version>/popular.parquet  the popular products (tessera/publish/popular.py), top 3
        <version>/manifest.json    exported_at, as_of_date, row counts, salt label

It holds identifiers (CRM ids, cookies, customer_key) and first names: it is internal data, like
the DuckDB file. Each export starts from audiences.active_customers, so an erased person is gone
from the next export; an erasure also removes them from the current one at once (erase(), a file
step of tessera/privacy/erasure_run.py), and the suppression keys in Redis
(tessera/realtime/triggers.py) cover a revoke between two batch runs.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from tessera.db import table_exists
from tessera.decisioning.catalogue import CHANNELS
from tessera.decisioning.decide import REACH
from tessera.decisioning.render import CART_ITEMS, RECOMMENDATIONS
from tessera.decisioning.templates import CUSTOMER
from tessera.privacy import pseudonym
from tessera.privacy.pseudonym import salt_label
from tessera.publish.popular import POPULAR_PRODUCTS_SQL
from tessera.sql import ident

CURRENT = "CURRENT"
MANIFEST = "manifest.json"
FORMAT = 1
FILES = ("visitors", "customers", "products", "popular")


def default_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "realtime" / "trigger_audience"


def _customers_sql() -> str:
    reach = ",\n            ".join(f"{sql} as {ident('reach_' + channel)}" for channel, (sql, _) in REACH.items())
    return f"""
        with crm as (
            select customer_key, list(node_value order by node_value) as user_ids
            from intermediate.int_identities_resolved
            where node_type = 'crm'
            group by customer_key
        ),
        consents as (
            select customer_key, list(channel || '/' || purpose order by channel, purpose) as granted
            from marts.customer_consents
            where granted
            group by customer_key
        ),
        recommendations as (
            select customer_key,
                list(struct_pack(product_id := product_id, product_name := product_name, category := category,
                                 rank := rank) order by rank) as items
            from (
                select r.customer_key, r.product_id, p.product_name, p.category,
                    row_number() over (partition by r.customer_key order by r.rank) as rank
                from ml.recommendation_candidates as r
                inner join marts.dim_products as p on p.product_id = r.product_id and p.is_active
            )
            where rank <= $recommendations
            group by customer_key
        )
        select
            c.customer_key,
            customer_pkey(c.customer_key) as customer_pkey,
            coalesce(crm.user_ids, []) as user_ids,
            {reach},
            coalesce(k.granted, []) as granted,
            c.first_name, s.rfm_segment, g.rule_segment, cl.cluster_description, f.top_category, f.last_device,
            coalesce(rec.items, []) as recommendations
        from audiences.active_customers as c
        left join crm on crm.customer_key = c.customer_key
        left join consents as k on k.customer_key = c.customer_key
        left join marts.customer_rfm as s on s.customer_key = c.customer_key
        left join marts.customer_rule_segments as g on g.customer_key = c.customer_key
        left join ml.customer_clusters as cl on cl.customer_key = c.customer_key
        left join marts.customer_features as f on f.customer_key = c.customer_key
        left join recommendations as rec on rec.customer_key = c.customer_key
        order by c.customer_key
    """


VISITORS_SQL = """
    select case n.node_type when 'crm' then 'u:' else 'a:' end || n.node_value as visitor, n.customer_key
    from intermediate.int_identities_resolved as n
    inner join audiences.active_customers as c on c.customer_key = n.customer_key
    where n.node_type in ('crm', 'cookie')
    order by visitor
"""

PRODUCTS_SQL = """
    with related as (
        select r.product_id,
            list(struct_pack(product_id := r.recommended_product_id, product_name := p.product_name,
                             category := p.category, rank := r.rank) order by r.rank) as items
        from ml.product_recommendations as r
        inner join marts.dim_products as p on p.product_id = r.recommended_product_id and p.is_active
        where r.list_name = 'bought_together' and r.rank <= $recommendations
        group by r.product_id
    )
    select p.product_id, p.product_name, p.category, p.is_active, coalesce(r.items, []) as related
    from marts.dim_products as p
    left join related as r on r.product_id = p.product_id
    order by p.product_id
"""


def export(con, out_dir: Path, salt: str, now: datetime | None = None) -> dict:
    """Write a new version of the trigger audience from the warehouse on `con` and make it current.
    Returns the manifest."""
    now = now or datetime.now(UTC)
    pseudonym.install(con, salt)
    params = {"recommendations": RECOMMENDATIONS}
    frames = {
        "customers": con.sql(_customers_sql(), params=params).pl(),
        "visitors": con.sql(VISITORS_SQL).pl(),
    }
    if table_exists(con, "ml", "product_recommendations"):
        frames["products"] = con.sql(PRODUCTS_SQL, params=params).pl()
    else:  # no lists per product yet (thin data): products without related ones
        frames["products"] = con.sql(
            "select product_id, product_name, category, is_active, "
            "cast([] as struct(product_id varchar, product_name varchar, category varchar, rank bigint)[]) as related "
            "from marts.dim_products order by product_id"
        ).pl()
    frames["popular"] = con.sql(
        f"select product_id, product_name, category, rank from ({POPULAR_PRODUCTS_SQL}) "
        "where rank <= $recommendations order by rank",
        params=params,
    ).pl()
    as_of = con.execute("select cast(max(as_of_date) as varchar) from marts.customer_rfm").fetchall()[0][0]
    manifest = {
        "format": FORMAT,
        "exported_at": now.astimezone(UTC).isoformat(),
        "as_of_date": as_of,
        "rows": {name: frame.height for name, frame in frames.items()},
        "salt": salt_label(salt),
    }
    return save(frames, out_dir, manifest, now)


def save(frames: dict[str, pl.DataFrame], out_dir: Path, manifest: dict, now: datetime | None = None) -> dict:
    """Write the frames as a new version folder, then point CURRENT at it (written aside and renamed
    over, so a reader sees the old version or the new one); older versions but the previous are removed."""
    now = now or datetime.now(UTC)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    version = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    staging = out_dir / f".{version}.tmp"
    staging.mkdir()
    for name in FILES:
        frames[name].write_parquet(staging / f"{name}.parquet")
    (staging / MANIFEST).write_text(json.dumps({**manifest, "version": version}, indent=2) + "\n")
    os.replace(staging, out_dir / version)
    pointer = out_dir / f".{CURRENT}.tmp"
    pointer.write_text(version + "\n")
    os.replace(pointer, out_dir / CURRENT)
    kept = sorted(p.name for p in out_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    for name in kept[:-2]:
        shutil.rmtree(out_dir / name)
    return {**manifest, "version": version}


def current_version(out_dir: Path) -> str | None:
    pointer = Path(out_dir) / CURRENT
    return pointer.read_text().strip() if pointer.exists() else None


@dataclass
class Customer:
    """What the worker needs to decide for one customer (a row of customers.parquet)."""

    customer_key: str
    customer_pkey: str
    user_ids: list[str]
    reach: dict[str, bool]
    granted: set[str]
    fields: dict  # templates.CUSTOMER
    recommendations: list[dict]

    def consented(self, channel: str, purpose: str) -> bool:
        return f"{channel}/{purpose}" in self.granted


class Audience:
    """One version of the trigger audience, loaded for lookups by visitor and product."""

    def __init__(self, frames: dict[str, pl.DataFrame], manifest: dict):
        self.manifest = manifest
        self.version = manifest.get("version")
        self._visitors = frames["visitors"].sort("visitor")
        self._customers = frames["customers"].sort("customer_key")
        self._products = frames["products"].sort("product_id")
        self.popular = frames["popular"].sort("rank").to_dicts()
        missing = [f"reach_{c}" for c in CHANNELS if f"reach_{c}" not in self._customers.columns]
        if missing:
            raise ValueError(f"the trigger audience has no {', '.join(missing)}: export it again")

    @classmethod
    def load(cls, out_dir: Path) -> Audience | None:
        """The current version, or None when nothing was exported yet."""
        version = current_version(out_dir)
        if version is None:
            return None
        folder = Path(out_dir) / version
        frames = {name: pl.read_parquet(folder / f"{name}.parquet") for name in FILES}
        return cls(frames, json.loads((folder / MANIFEST).read_text()))

    @staticmethod
    def _find(frame: pl.DataFrame, column: str, value: str) -> dict | None:
        series = frame.get_column(column)
        i = series.search_sorted(value, side="left")
        if i < frame.height and series[i] == value:
            return frame.row(i, named=True)
        return None

    def customer(self, visitor: str) -> Customer | None:
        """The customer a visitor id belongs to (None: unknown to the warehouse, or erased)."""
        node = self._find(self._visitors, "visitor", visitor)
        if node is None:
            return None
        row = self._find(self._customers, "customer_key", node["customer_key"])
        if row is None:
            return None
        return Customer(
            customer_key=row["customer_key"],
            customer_pkey=row["customer_pkey"],
            user_ids=list(row["user_ids"] or []),
            reach={c: bool(row[f"reach_{c}"]) for c in CHANNELS},
            granted=set(row["granted"] or []),
            fields={f: row.get(f) for f in CUSTOMER},
            recommendations=list(row["recommendations"] or []),
        )

    def product(self, product_id: str) -> dict | None:
        return self._find(self._products, "product_id", product_id)

    def products(self, product_ids: list[str], limit: int = CART_ITEMS) -> list[dict]:
        """The template records (templates.PRODUCT) of known products, in the given order, ranked 1..n."""
        out = []
        for product_id in product_ids:
            row = self.product(product_id)
            if row is not None:
                out.append({"product_id": product_id, "product_name": row["product_name"],
                            "category": row["category"], "rank": len(out) + 1})  # fmt: skip
            if len(out) == limit:
                break
        return out


def erase(out_dir: Path, values: list[str]) -> dict[str, int]:
    """Rewrite the current version without the erased people: every row whose visitor id, CRM id,
    customer_key or customer_pkey is one of `values` (and the customers such a row names). Each
    version folder is rewritten whole and made current as a new version. Returns the rows removed."""
    version = current_version(out_dir)
    if version is None or not values:
        return {"rows_removed": 0}
    folder = Path(out_dir) / version
    frames = {name: pl.read_parquet(folder / f"{name}.parquet") for name in FILES}
    manifest = json.loads((folder / MANIFEST).read_text())
    erased = set(values)
    ids = {v.removeprefix("u:").removeprefix("a:") for v in erased}
    visitors, customers = frames["visitors"], frames["customers"]
    keys = set(
        visitors.filter(pl.col("visitor").str.slice(2).is_in(list(ids)) | pl.col("visitor").is_in(list(erased)))
        .get_column("customer_key")
        .to_list()
    )
    keys |= set(
        customers.filter(
            pl.col("customer_key").is_in(list(erased))
            | pl.col("customer_pkey").is_in(list(erased))
            | pl.col("user_ids").list.eval(pl.element().is_in(list(ids))).list.any()
        )
        .get_column("customer_key")
        .to_list()
    )
    if not keys:
        return {"rows_removed": 0}
    before = visitors.height + customers.height
    frames["visitors"] = visitors.filter(~pl.col("customer_key").is_in(list(keys)))
    frames["customers"] = customers.filter(~pl.col("customer_key").is_in(list(keys)))
    removed = before - frames["visitors"].height - frames["customers"].height
    manifest["rows"] = {name: frame.height for name, frame in frames.items()}
    manifest["erasure_rewritten_at"] = datetime.now(UTC).isoformat()
    save(frames, out_dir, manifest)
    # the version the person was in goes now, not at the next export
    for name in sorted(p.name for p in Path(out_dir).iterdir() if p.is_dir() and not p.name.startswith(".")):
        if name != current_version(out_dir):
            shutil.rmtree(Path(out_dir) / name)
    return {"rows_removed": removed}
