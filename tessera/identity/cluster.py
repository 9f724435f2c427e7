"""Clustering that resists over-merging, with a graded veto.

Links (deterministic, and probabilistic at or above the match probability) form connected
components. A component that holds two records whose own comparison is strong evidence against a
match (a *cannot-link*: log2 Bayes factor at or below `cannot_link_weight`) would chain two people
together, so it is re-clustered greedily: deterministic links first, then the others by weight,
refusing every link that would put a cannot-link pair in one cluster. The veto is graded: it comes
from the whole comparison, so a one-character typo in a birth date or an id weighs little and two
different people weigh a lot. Python loops only over the links of such components.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def _positions(record_ids: pl.Series, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Row positions in record_ids of each pair's record_l and record_r."""
    if frame.is_empty():
        return np.array([], dtype=np.int64), np.array([], dtype=np.int64)
    index = pl.DataFrame({"record_id": record_ids, "i": np.arange(len(record_ids))})
    joined = frame.select("record_l", "record_r").with_row_index("_k")
    left = joined.join(index, left_on="record_l", right_on="record_id", how="left").sort("_k")["i"]
    right = joined.join(index, left_on="record_r", right_on="record_id", how="left").sort("_k")["i"]
    return left.to_numpy(), right.to_numpy()


def components(record_ids: pl.Series, links: pl.DataFrame) -> np.ndarray:
    """Connected-component label per record (aligned with record_ids)."""
    n = len(record_ids)
    li, ri = _positions(record_ids, links)
    _, labels = connected_components(coo_matrix((np.ones(len(li)), (li, ri)), shape=(n, n)), directed=False)
    return labels


def cluster(
    record_ids: pl.Series,
    links: pl.DataFrame,
    scored: pl.DataFrame,
    cannot_link_weight: float,
    min_average: float,
    max_group: int,
) -> tuple[np.ndarray, pl.Series]:
    """Labels per record (aligned with record_ids) and, per link (aligned with links), None or the
    reason it was refused. links: record_l, record_r, kind, weight; scored: record_l, record_r, bf
    for every compared pair (inside a linked group, every pair)."""
    li, ri = _positions(record_ids, links)
    labels = components(record_ids, links)
    reasons: list[str | None] = [None] * len(links)
    cannot = scored.filter(pl.col("bf") <= cannot_link_weight)
    ci, cj = _positions(record_ids, cannot)
    sizes = np.bincount(labels)
    if (sizes > max_group).any():
        labels = _greedy(labels, sizes > max_group, li, ri, links, ci, cj)
    inside = labels[ci] == labels[cj] if len(ci) else np.array([], dtype=bool)
    if not inside.any():
        return labels, pl.Series("refused_reason", reasons, dtype=pl.String)
    conflicted = np.zeros(labels.max() + 1, dtype=bool)
    conflicted[labels[ci[inside]]] = True
    si, sj = _positions(record_ids, scored)
    bfs = scored["bf"].to_numpy()
    deterministic = (links["kind"] == "deterministic").to_numpy() if len(links) else np.array([], dtype=bool)
    new_labels = labels.copy()
    offset = labels.max() + 1
    members_of = _split(np.flatnonzero(conflicted[labels]), labels)
    pair_sel = np.flatnonzero((labels[si] == labels[sj]) & conflicted[labels[si]])
    pairs_of = _split(pair_sel, labels[si])
    must_sel = np.flatnonzero(deterministic & conflicted[labels[li]]) if len(li) else np.array([], dtype=np.int64)
    must_of = _split(must_sel, labels[li]) if len(li) else {}
    for g, members in members_of.items():
        if len(members) > max_group:
            continue  # too large to compare every pair: left as linked, and counted by the engine
        local = np.full(len(labels), -1)
        local[members] = np.arange(len(members))
        k = len(members)
        # average-linkage agglomeration on the pair weights: two parts merge while the mean weight
        # of the pairs between them reaches min_average and none of them is a cannot-link;
        # deterministic links hold unless a pair between their parts is a cannot-link
        w = np.zeros((k, k))
        p = pairs_of.get(g, np.array([], dtype=np.int64))
        w[local[si[p]], local[sj[p]]] = bfs[p]
        w[local[sj[p]], local[si[p]]] = bfs[p]
        m = must_of.get(g, np.array([], dtype=np.int64))
        must = list(zip(local[li[m]].tolist(), local[ri[m]].tolist(), strict=True))
        new_labels[members] = offset + _agglomerate(w, must, cannot_link_weight, min_average)
        offset += k
    refused = np.flatnonzero(new_labels[li] != new_labels[ri]) if len(li) else np.array([], dtype=np.int64)
    if len(refused):
        for idx, reason in zip(
            refused,
            _refusals(record_ids, new_labels, li[refused], ri[refused], si, sj, bfs, cannot_link_weight),
            strict=True,
        ):
            reasons[idx] = reason
    return new_labels, pl.Series("refused_reason", reasons, dtype=pl.String)


def _greedy(labels, too_large, li, ri, links, ci, cj) -> np.ndarray:
    """Break groups too large to compare every pair: union-find over their links, deterministic
    first and then by weight, refusing a union that would hold a cannot-link pair."""
    members = np.flatnonzero(too_large[labels])
    parent = {int(m): int(m) for m in members}
    holds = {int(m): [int(m)] for m in members}
    against: dict[int, set[int]] = {}
    for a, b in zip(ci.tolist(), cj.tolist(), strict=True):
        if a in parent and b in parent:
            against.setdefault(a, set()).add(b)
            against.setdefault(b, set()).add(a)
    sel = np.flatnonzero(too_large[labels[li]])
    det = (links["kind"] == "deterministic").to_numpy()[sel]
    weight = links["weight"].to_numpy()[sel]
    order = sel[np.lexsort((-weight, ~det))]

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(li[order].tolist(), ri[order].tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        small, large = (ra, rb) if len(holds[ra]) <= len(holds[rb]) else (rb, ra)
        if any(find(y) == large for x in holds[small] for y in against.get(x, ())):
            continue
        parent[small] = large
        holds[large].extend(holds.pop(small))
    out = labels.copy()
    offset = labels.max() + 1
    for m in members:
        out[m] = offset + find(int(m))
    _, dense = np.unique(out, return_inverse=True)
    return dense


def _split(positions: np.ndarray, keys: np.ndarray) -> dict[int, np.ndarray]:
    """positions grouped by keys[positions]."""
    if not len(positions):
        return {}
    order = positions[np.argsort(keys[positions], kind="stable")]
    sorted_keys = keys[order]
    cuts = np.flatnonzero(np.diff(sorted_keys)) + 1
    return {
        int(chunk_keys[0]): chunk
        for chunk, chunk_keys in zip(np.split(order, cuts), np.split(sorted_keys, cuts), strict=True)
    }


def _agglomerate(
    w: np.ndarray, must: list[tuple[int, int]], cannot_link_weight: float, min_average: float
) -> np.ndarray:
    """Group labels 0..k-1 of a k-record component: must-links first (unless a pair between the
    groups is a cannot-link), then average linkage down to min_average, never across a cannot-link."""
    k = len(w)
    group = np.arange(k)
    for a, b in must:
        ga, gb = group[a], group[b]
        if ga != gb and w[np.ix_(group == ga, group == gb)].min() > cannot_link_weight:
            group[group == gb] = ga
    # between-group weight sums, pair counts and weakest pair, merged in place (O(k^2) per merge)
    _, group = np.unique(group, return_inverse=True)
    g = group.max() + 1
    onehot = np.zeros((k, g))
    onehot[np.arange(k), group] = 1.0
    sums = onehot.T @ w @ onehot
    counts = onehot.sum(0)
    order = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0])
    weakest = np.minimum.reduceat(np.minimum.reduceat(w[order][:, order], starts, axis=0), starts, axis=1)
    np.fill_diagonal(weakest, np.inf)
    mean = sums / np.outer(counts, counts)
    mean[weakest <= cannot_link_weight] = -np.inf
    np.fill_diagonal(mean, -np.inf)
    for _ in range(g - 1):
        x, y = np.unravel_index(np.argmax(mean), mean.shape)
        if mean[x, y] < min_average:
            break
        sums[x, :] += sums[y, :]
        sums[:, x] = sums[x, :]
        counts[x] += counts[y]
        weakest[x, :] = np.minimum(weakest[x, :], weakest[y, :])
        weakest[:, x] = weakest[x, :]
        weakest[x, x] = np.inf
        row = sums[x, :] / (counts[x] * counts)
        row[weakest[x, :] <= cannot_link_weight] = -np.inf
        row[x] = -np.inf
        mean[x, :] = row
        mean[:, x] = row
        mean[y, :] = -np.inf
        mean[:, y] = -np.inf
        group[group == y] = x
    _, dense = np.unique(group, return_inverse=True)
    return dense


def _refusals(record_ids, labels, la, lb, si, sj, bfs, cannot_link_weight) -> list[str]:
    """Why each refused link (records la, lb) was refused: the weakest pair between the two groups
    it would have joined, and the mean weight between them."""
    ga, gb = labels[si], labels[sj]
    between = pl.DataFrame({"x": np.minimum(ga, gb), "y": np.maximum(ga, gb), "bf": bfs, "i": si, "j": sj}).filter(
        pl.col("x") != pl.col("y")
    )
    summary = between.group_by("x", "y").agg(
        mean=pl.col("bf").mean(),
        worst=pl.col("bf").min(),
        i=pl.col("i").sort_by("bf").first(),
        j=pl.col("j").sort_by("bf").first(),
    )
    asked = pl.DataFrame(
        {"x": np.minimum(labels[la], labels[lb]), "y": np.maximum(labels[la], labels[lb])}
    ).with_row_index("_k")
    rows = asked.join(summary, on=["x", "y"], how="left").sort("_k")
    ids = record_ids.to_list()
    out = []
    for mean, worst, i, j in rows.select("mean", "worst", "i", "j").iter_rows():
        if worst is None:
            out.append("the groups it joins were never compared")
            continue
        kind = "cannot-link" if worst <= cannot_link_weight else "weak groups"
        out.append(f"{kind}: {ids[i]} and {ids[j]} compare at weight {worst:.1f} (mean between the groups {mean:.1f})")
    return out
