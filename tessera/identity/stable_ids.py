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

HISTORY_COLUMNS = ["event_type", "customer_id", "other_customer_id", "record_count", "evidence"]


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


def _evidence_between(edges: pd.DataFrame, left: set[str], right: set[str]) -> str:
    if edges is None or edges.empty:
        return ""
    mask = (edges["record_l"].isin(left) & edges["record_r"].isin(right)) | (
        edges["record_l"].isin(right) & edges["record_r"].isin(left)
    )
    hits = edges[mask & edges["accepted"]]
    return "; ".join(f"{r.record_l}~{r.record_r}: {r.evidence}" for r in hits.head(5).itertuples())


def assign_stable_ids(
    previous: pd.DataFrame, assignments: pd.DataFrame, edges: pd.DataFrame | None = None
) -> StableIds:
    """previous: record_id, customer_id (may be empty); assignments: record_id, cluster_id."""
    cur = assignments[["record_id", "cluster_id"]].merge(
        previous[["record_id", "customer_id"]].rename(columns={"customer_id": "old_id"}), on="record_id", how="left"
    )
    known = cur.dropna(subset=["old_id"])
    # per old id: which cluster keeps it (most of its current records; ties -> smallest cluster id)
    spread = known.groupby(["old_id", "cluster_id"]).size().rename("n").reset_index()
    spread = spread.sort_values(["old_id", "n", "cluster_id"], ascending=[True, False, True])
    keeper = spread.drop_duplicates("old_id")[["old_id", "cluster_id", "n"]]
    # per cluster: candidate ids it keeps; survivor = most records, ties -> smallest id
    survivors = keeper.sort_values(["cluster_id", "n", "old_id"], ascending=[True, False, True])
    survivor_of = survivors.drop_duplicates("cluster_id").set_index("cluster_id")["old_id"]

    events: list[dict] = []
    taken = set(previous["customer_id"].dropna()) if len(previous) else set()
    cluster_ids = pd.Series(cur["cluster_id"].unique())
    missing = sorted(set(cluster_ids) - set(survivor_of.index))
    new_ids = {}
    for cluster in missing:  # one iteration per new person, not per record
        cid = new_customer_id(cluster, taken)
        taken.add(cid)
        new_ids[cluster] = cid
    final = pd.concat([survivor_of, pd.Series(new_ids, dtype=object)])
    cur["customer_id"] = cur["cluster_id"].map(final)

    sizes = cur.groupby("cluster_id").size()
    # merges: clusters that kept two or more earlier ids. They are few, and only their records are
    # gathered into sets for the evidence (sets for every cluster cost most of a rerun: docs/scaling.md).
    merging = survivors[survivors.duplicated("cluster_id", keep=False)]
    members = cur[cur["cluster_id"].isin(merging["cluster_id"])].groupby("cluster_id")["record_id"].agg(set)
    old_members = known[known["old_id"].isin(merging["old_id"])].groupby("old_id")["record_id"].agg(set)

    held_clusters = set(spread["cluster_id"])
    for cluster, cid in new_ids.items():
        if cluster not in held_clusters:
            events.append(
                {
                    "event_type": "created",
                    "customer_id": cid,
                    "other_customer_id": None,
                    "record_count": int(sizes[cluster]),
                    "evidence": "",
                }
            )
    keeper_of = keeper.set_index("old_id")["cluster_id"]
    moved = spread[spread["cluster_id"].to_numpy() != keeper_of.loc[spread["old_id"]].to_numpy()]
    for row in moved.itertuples(index=False):  # records that left an id: a split of that id
        events.append(
            {
                "event_type": "split",
                "customer_id": final[row.cluster_id],
                "other_customer_id": row.old_id,
                "record_count": int(row.n),
                "evidence": "no accepted link left to the records that kept " + row.old_id,
            }
        )
    for cluster, group in merging.groupby("cluster_id"):
        survivor = survivor_of[cluster]
        for old in group["old_id"]:
            if old == survivor:
                continue
            events.append(
                {
                    "event_type": "merged",
                    "customer_id": survivor,
                    "other_customer_id": old,
                    "record_count": int(sizes[cluster]),
                    "evidence": _evidence_between(edges, old_members[old], members[cluster] - old_members[old]),
                }
            )
    return StableIds(
        identity_map=cur[["record_id", "customer_id"]].sort_values("record_id").reset_index(drop=True),
        events=pd.DataFrame(events, columns=HISTORY_COLUMNS),
    )
