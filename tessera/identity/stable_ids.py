"""Stable tessera customer ids on top of run-by-run clusters.

Given the previous identity map (record -> customer id) and this run's clusters:
- a cluster whose records held no id gets a new one (a hash of its smallest record id);
- a cluster whose records held one id keeps it, so new records join existing ids;
- a cluster whose records held several ids is a merge: the id holding most of its records
  survives (ties: the smallest id) and the others are retired;
- an id whose records are now spread over several clusters is a split: the cluster holding most of
  them keeps the id (ties: the cluster with the smallest record id), the others get new ids.
Every merge, split and creation is returned as a history event with its evidence. Unchanged input
gives the same map and no events.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd
import polars as pl

HISTORY_SCHEMA = {
    "event_type": pl.String,
    "customer_id": pl.String,
    "other_customer_id": pl.String,
    "record_count": pl.Int64,
    "evidence": pl.String,
}
HISTORY_COLUMNS = list(HISTORY_SCHEMA)
LINK_SCHEMA = {"record_l": pl.String, "record_r": pl.String, "accepted": pl.Boolean, "evidence": pl.String}


@dataclass
class StableIds:
    identity_map: pd.DataFrame  # record_id, customer_id
    events: pd.DataFrame  # HISTORY_COLUMNS


def new_customer_id(seed_record_id: str, taken: set[str]) -> str:
    salt = 0
    while True:
        text = seed_record_id if salt == 0 else f"{seed_record_id}#{salt}"
        cid = "tc_" + hashlib.md5(text.encode()).hexdigest()[:16]
        if cid not in taken:
            return cid
        salt += 1


def _polars(frame: pd.DataFrame | pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """The columns of `schema` from a pandas or polars frame, cast to it (an empty pandas frame
    has untyped columns)."""
    columns = list(schema)
    picked = frame.select(columns) if isinstance(frame, pl.DataFrame) else pl.from_pandas(frame[columns])
    return picked.cast(schema)


def _strings(frame: pd.DataFrame | pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    return _polars(frame, dict.fromkeys(columns, pl.String))


def _evidence_between(edges: pl.DataFrame, left: set[str], right: set[str]) -> str:
    if edges.is_empty():
        return ""
    l_side, r_side = pl.col("record_l"), pl.col("record_r")
    hits = edges.filter(
        (
            (l_side.is_in(list(left)) & r_side.is_in(list(right)))
            | (l_side.is_in(list(right)) & r_side.is_in(list(left)))
        )
        & pl.col("accepted")
    )
    return "; ".join(f"{r['record_l']}~{r['record_r']}: {r['evidence']}" for r in hits.head(5).iter_rows(named=True))


def _members(frame: pl.DataFrame, key: str, keys: pl.Series) -> dict[str, set[str]]:
    """The record ids of each value of `key` among `keys`."""
    grouped = frame.filter(pl.col(key).is_in(keys.implode())).group_by(key).agg("record_id")
    return {k: set(records) for k, records in grouped.iter_rows()}


def _ranked_first(frame: pl.DataFrame, key: str, tie: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`frame` ordered by `key`, most records (`n`) first, ties by `tie`; and its first row per `key`."""
    ranked = frame.sort([key, "n", tie], descending=[False, True, False])
    return ranked, ranked.unique(key, keep="first", maintain_order=True)


def assign_stable_ids(
    previous: pd.DataFrame | pl.DataFrame,
    assignments: pd.DataFrame | pl.DataFrame,
    edges: pd.DataFrame | pl.DataFrame | None = None,
) -> StableIds:
    """previous: record_id, customer_id (may be empty); assignments: record_id, cluster_id.
    Frames in pandas or polars; the result is pandas, as the identity engine's and the identity
    asset's frames are."""
    prev = _strings(previous, ["record_id", "customer_id"])
    cur = _strings(assignments, ["record_id", "cluster_id"]).join(
        prev.rename({"customer_id": "old_id"}), on="record_id", how="left", maintain_order="left"
    )
    known = cur.filter(pl.col("old_id").is_not_null())
    # per old id: which cluster keeps it (most of its current records; ties -> smallest cluster id)
    spread, keeper = _ranked_first(known.group_by("old_id", "cluster_id").agg(n=pl.len()), "old_id", "cluster_id")
    # per cluster: candidate ids it keeps; survivor = most records, ties -> smallest id
    survivors, survivor_of = _ranked_first(keeper, "cluster_id", "old_id")

    taken = set(prev["customer_id"].drop_nulls().to_list())
    missing = cur.select(pl.col("cluster_id").unique()).join(survivor_of, on="cluster_id", how="anti")
    new_ids = {}
    for cluster in missing["cluster_id"].sort().to_list():  # one iteration per new person, not per record
        cid = new_customer_id(cluster, taken)
        taken.add(cid)
        new_ids[cluster] = cid
    created = pl.DataFrame(
        {"cluster_id": list(new_ids), "customer_id": list(new_ids.values())},
        schema={"cluster_id": pl.String, "customer_id": pl.String},
    )
    final = pl.concat([survivor_of.select("cluster_id", customer_id="old_id"), created])
    cur = cur.join(final, on="cluster_id", how="left", maintain_order="left")
    sizes = cur.group_by("cluster_id").agg(record_count=pl.len())

    # merges: clusters that kept two or more earlier ids. They are few, and only their records are
    # gathered into sets for the evidence (sets for every cluster cost most of a rerun: docs/scaling.md).
    merging = survivors.filter(pl.len().over("cluster_id") > 1)
    members = _members(cur, "cluster_id", merging["cluster_id"])
    old_members = _members(known, "old_id", merging["old_id"])

    created_events = (
        created.join(spread.select("cluster_id").unique(), on="cluster_id", how="anti", maintain_order="left")
        .join(sizes, on="cluster_id", how="left", maintain_order="left")
        .select(
            event_type=pl.lit("created"),
            customer_id="customer_id",
            other_customer_id=pl.lit(None, pl.String),
            record_count="record_count",
            evidence=pl.lit(""),
        )
    )
    # records that left an id: a split of that id
    split_events = (
        spread.join(keeper.select("old_id", kept="cluster_id"), on="old_id", maintain_order="left")
        .filter(pl.col("cluster_id") != pl.col("kept"))
        .join(final, on="cluster_id", how="left", maintain_order="left")
        .select(
            event_type=pl.lit("split"),
            customer_id="customer_id",
            other_customer_id="old_id",
            record_count="n",
            evidence="no accepted link left to the records that kept " + pl.col("old_id"),
        )
    )
    links = pl.DataFrame(schema=LINK_SCHEMA)
    if edges is not None and len(edges) and not merging.is_empty():
        links = _polars(edges, LINK_SCHEMA)
    merged = []
    survivor = dict(survivor_of.select("cluster_id", "old_id").iter_rows())
    count = dict(sizes.iter_rows())
    for cluster, old in merging.select("cluster_id", "old_id").iter_rows():  # by cluster, survivor first
        if old == survivor[cluster]:
            continue
        evidence = _evidence_between(links, old_members[old], members[cluster] - old_members[old])
        merged.append(("merged", survivor[cluster], old, count[cluster], evidence))
    merged_events = pl.DataFrame(merged, schema=HISTORY_SCHEMA, orient="row")
    events = pl.concat([created_events.cast(HISTORY_SCHEMA), split_events.cast(HISTORY_SCHEMA), merged_events])
    return StableIds(
        identity_map=cur.select("record_id", "customer_id").sort("record_id").to_pandas(),
        events=events.to_pandas(),
    )
