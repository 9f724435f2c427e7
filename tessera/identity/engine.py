"""The identity engine: standardise, link deterministically, match probabilistically, cluster.

1. Standardise every mapped attribute into matching keys (lower-case names without accents or
   punctuation, ISO birth dates, postcodes without spaces, the last 9 phone digits, ...).
2. Deterministic links: records sharing an email, phone, national id or extra identifier. A value
   shared by more than `max_records_per_identifier` records links nothing (placeholder/household).
   Records sharing a declared identifier (an optional long table of record_id, id_type, id_value:
   a marketplace's person id, a login id) are linked too, the id type as evidence; a declared
   value links at most `max_records_per_declared_identifier` records (a person id legitimately
   groups a buyer's many order profiles), and the values over it are counted per type.
3. Fuzzy links for the rest, Fellegi-Sunter style: candidate pairs come from blocking rules (equal
   values on a few columns); each pair gets a comparison level per attribute (exact, close by
   Jaro-Winkler or Levenshtein, different, missing), and the match weight is the sum of
   log2(m/u). u-probabilities come from the pairs of a seeded sample of records (by hashed record id); m-probabilities from the
   deterministically linked pairs (records that share a strong identifier are, by construction,
   the same person), with add-one smoothing. A pair at or above `match_weight` is a match.
4. Clustering: connected components of all links. A component whose records disagree on a
   conflict attribute (two birth dates, two emails, two national ids) is re-clustered greedily,
   strongest link first, refusing every link that would put conflicting values in one cluster.

All set-based work is SQL in DuckDB; Python only loops over the edges of conflicted components.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from tessera.identity.config import FUZZY_ATTRIBUTES, STRONG_IDENTIFIERS, IdentityConfig
from tessera.sql import ident

RECORDS = "__id_records"
PAIRS = "__id_pairs"
DECLARED = "__id_declared"


@dataclass
class ResolveResult:
    assignments: pd.DataFrame  # record_id, cluster_id
    edges: pd.DataFrame  # record_l, record_r, kind, evidence, weight, accepted, refused_reason
    stats: dict = field(default_factory=dict)
    weights: pd.DataFrame | None = None  # attribute, level, m, u, weight


def _text(columns: list[str]) -> str:
    parts = [f"cast({ident(c)} as varchar)" for c in columns]
    return parts[0] if len(parts) == 1 else f"concat_ws(' ', {', '.join(parts)})"


def _person_name_key(expr: str) -> str:
    """Letters only: O'Connor, OConnor and o connor compare equal."""
    return f"nullif(regexp_replace(lower(strip_accents({expr})), '[^a-z]', '', 'g'), '')"


def _name_key(expr: str, keep_digits: bool = False) -> str:
    allowed = "a-z0-9 " if keep_digits else "a-z "
    return (
        f"nullif(trim(regexp_replace(regexp_replace(lower(strip_accents({expr})), '[^{allowed}]', ' ', 'g'), "
        f"'\\s+', ' ', 'g')), '')"
    )


def _code_key(expr: str) -> str:
    return f"nullif(upper(regexp_replace({expr}, '[^A-Za-z0-9]', '', 'g')), '')"


STANDARDISERS = {
    "given_name": _person_name_key,
    "surname": _person_name_key,
    "address": lambda e: _name_key(e, keep_digits=True),
    "city": lambda e: _name_key(e, keep_digits=True),
    "state": lambda e: _name_key(e, keep_digits=True),
    "postcode": _code_key,
    "national_id": _code_key,
    "birth_date": lambda e: (
        f"strftime(coalesce(try_cast(trim({e}) as date), try_strptime(trim({e}), '%Y%m%d')::date, "
        f"try_strptime(trim({e}), '%d/%m/%Y')::date), '%Y-%m-%d')"
    ),
    "email": lambda e: (
        f"case when regexp_matches(lower(trim({e})), '^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$') then lower(trim({e})) end"
    ),
    # the last 9 digits compare equal across +44 7700 900123, 07700 900123 and 0044-7700-900123
    "phone": lambda e: (
        f"case when length(regexp_replace({e}, '[^0-9]', '', 'g')) >= 7 "
        f"then right(regexp_replace({e}, '[^0-9]', '', 'g'), 9) end"
    ),
}


def standardise(con: duckdb.DuckDBPyConnection, source: str, config: IdentityConfig) -> list[str]:
    """Create the temp table of standardised records; return the attributes present."""
    attrs = config.attributes()
    select = [f"cast({ident(config.record_id)} as varchar) as record_id"]
    for attr in attrs:
        select.append(f"{STANDARDISERS[attr](_text(config.columns[attr]))} as {attr}")
    for extra in config.extra_identifiers:
        select.append(f"{_code_key(_text([extra]))} as {ident('x_' + extra)}")
    con.execute(f"create or replace temp table {RECORDS} as select {', '.join(select)} from {source}")
    dupes = con.execute(
        f"select count(*) from (select record_id from {RECORDS} group by 1 having count(*) > 1)"
    ).fetchone()[0]
    nulls = con.execute(f"select count(*) from {RECORDS} where record_id is null").fetchone()[0]
    if dupes or nulls:
        raise ValueError(
            f"record id column '{config.record_id}' must be unique and not null: {dupes} duplicated, {nulls} null"
        )
    return attrs


def _identifier_columns(config: IdentityConfig, attrs: list[str]) -> list[str]:
    return [a for a in STRONG_IDENTIFIERS if a in attrs] + [f"x_{e}" for e in config.extra_identifiers]


def declare_identifiers(con: duckdb.DuckDBPyConnection, identifiers: str | None) -> dict:
    """Create the temp table of declared identifiers (record_id, id_type, id_value), each pair once,
    from `identifiers` (a table, view or parenthesised query with those columns; None: none), and
    return what was declared. Types are compared lower-case and values exactly, both trimmed; a row
    without all three is no identifier. A row whose record is not among the records links nothing
    and is counted."""
    con.execute(f"create or replace temp table {DECLARED} (record_id varchar, id_type varchar, id_value varchar)")
    if identifiers is None:
        return {"declared_identifiers": 0, "declared_identifiers_of_unknown_records": 0}
    con.execute(
        f"""
        create or replace temp table __id_declared_all as
        select distinct record_id, id_type, id_value from (
            select
                nullif(trim(cast(record_id as varchar)), '') as record_id,
                nullif(lower(trim(cast(id_type as varchar))), '') as id_type,
                nullif(trim(cast(id_value as varchar)), '') as id_value
            from {identifiers}
        )
        where record_id is not null and id_type is not null and id_value is not null
        """
    )
    con.execute(
        f"insert into {DECLARED} select d.* from __id_declared_all as d "
        f"where d.record_id in (select record_id from {RECORDS})"
    )
    kept, unknown = con.execute(
        f"select count(*) filter (where record_id in (select record_id from {RECORDS})), "
        f"count(*) filter (where record_id not in (select record_id from {RECORDS})) from __id_declared_all"
    ).fetchone()
    con.execute("drop table __id_declared_all")
    return {"declared_identifiers": int(kept), "declared_identifiers_of_unknown_records": int(unknown)}


def declared_edges(con: duckdb.DuckDBPyConnection, config: IdentityConfig) -> tuple[pd.DataFrame, dict]:
    """Links between records sharing a declared (id_type, id_value), to the smallest record of the
    value, evidence the id type; and per id type, the values shared by more records than
    max_records_per_declared_identifier (those link nothing)."""
    cap = config.max_records_per_declared_identifier
    con.execute(
        f"""
        create or replace temp table __id_declared_values as
        select id_type, id_value, count(*) as records, min(record_id) as anchor
        from {DECLARED} group by id_type, id_value
        """
    )
    overshared = dict(
        con.execute(
            "select id_type, count(*) from __id_declared_values where records > ? group by id_type order by id_type",
            [cap],
        ).fetchall()
    )
    edges = con.execute(
        f"""
        select v.anchor as record_l, d.record_id as record_r, d.id_type as evidence
        from {DECLARED} as d
        inner join __id_declared_values as v on v.id_type = d.id_type and v.id_value = d.id_value
        where v.records between 2 and ? and d.record_id <> v.anchor
        """,
        [cap],
    ).df()
    largest = con.execute("select coalesce(max(records), 0) from __id_declared_values").fetchone()[0]
    con.execute("drop table __id_declared_values")
    return edges, {
        "declared_links": len(edges),
        "overshared_declared_identifier_values": {k: int(v) for k, v in overshared.items()},
        "largest_declared_identifier_records": int(largest),
    }


def deterministic_edges(
    con: duckdb.DuckDBPyConnection, config: IdentityConfig, attrs: list[str]
) -> tuple[pd.DataFrame, dict]:
    """Links between records sharing a strong, extra or declared identifier (declare_identifiers
    first), evidence the identifiers joined with '+', and the values too widely shared to link."""
    frames, overshared = [], {}
    for col in _identifier_columns(config, attrs):
        c = ident(col)
        overshared[col] = con.execute(
            f"select count(*) from (select {c} from {RECORDS} where {c} is not null group by 1 having count(*) > ?)",
            [config.max_records_per_identifier],
        ).fetchone()[0]
        frames.append(
            con.execute(
                f"""
                with g as (select {c} as v, record_id from {RECORDS} where {c} is not null),
                ok as (select v, min(record_id) as anchor from g group by v having count(*) between 2 and ?)
                select ok.anchor as record_l, g.record_id as record_r, ? as evidence
                from g inner join ok on ok.v = g.v
                where g.record_id <> ok.anchor
                """,
                [config.max_records_per_identifier, col.removeprefix("x_")],
            ).df()
        )
    declared, declared_stats = declared_edges(con, config)
    frames.append(declared)
    stats = {"overshared_identifier_values": overshared, **declared_stats}
    edges = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else None
    if edges is None:
        return pd.DataFrame({"record_l": [], "record_r": [], "evidence": []}, dtype=object), stats
    edges = edges.groupby(["record_l", "record_r"], as_index=False)["evidence"].agg(lambda s: "+".join(sorted(set(s))))
    return edges, stats


def _level_sql(attr: str) -> str:
    lx, rx = f"l.{attr}", f"r.{attr}"
    null = f"when {lx} is null or {rx} is null then -1"
    if attr in ("given_name", "surname"):
        return (
            f"case {null} when {lx} = {rx} then 3 when jaro_winkler_similarity({lx}, {rx}) >= 0.92 then 2 "
            f"when jaro_winkler_similarity({lx}, {rx}) >= 0.8 then 1 else 0 end"
        )
    if attr in ("birth_date", "postcode"):
        return f"case {null} when {lx} = {rx} then 2 when levenshtein({lx}, {rx}) <= 1 then 1 else 0 end"
    if attr == "address":
        return (
            f"case {null} when {lx} = {rx} then 2 when levenshtein({lx}, {rx}) <= 3 "
            f"or jaro_winkler_similarity({lx}, {rx}) >= 0.9 then 1 else 0 end"
        )
    return f"case {null} when {lx} = {rx} then 1 else 0 end"


LEVELS = {"given_name": 4, "surname": 4, "birth_date": 3, "postcode": 3, "address": 3, "city": 2, "state": 2}
# Prior m-probabilities per level (0 = different ... highest = exact), typical of person data. The
# estimate from linked pairs is blended with them as PRIOR_STRENGTH pseudo-pairs, so a table with few
# deterministic links still gets a sensible model and a large one is driven by its own data.
PRIOR_M = {
    "given_name": (0.03, 0.04, 0.08, 0.85),
    "surname": (0.03, 0.04, 0.08, 0.85),
    "birth_date": (0.03, 0.07, 0.90),
    "postcode": (0.06, 0.06, 0.88),
    "address": (0.10, 0.20, 0.70),
    "city": (0.10, 0.90),
    "state": (0.05, 0.95),
}
PRIOR_STRENGTH = 20.0


def candidate_pairs(con: duckdb.DuckDBPyConnection, config: IdentityConfig, attrs: list[str]) -> dict:
    """Create the temp table of blocked pairs (record_l < record_r) with the first rule that found them."""
    selects, rules, per_rule, skipped = [], [], {}, {}
    for i, rule in enumerate(config.blocking_rules):
        if not set(rule) <= set(attrs):
            continue
        cols = [ident(c) for c in rule]
        not_null = " and ".join(f"{c} is not null" for c in cols)
        key = ", ".join(cols)
        name = "+".join(rule)
        con.execute(
            f"""
            create or replace temp table __id_block_{i} as
            select {key} from {RECORDS} where {not_null} group by {key} having count(*) between 2 and ?
            """,
            [config.max_block_size],
        )
        skipped[name] = con.execute(
            f"select count(*) from (select {key} from {RECORDS} where {not_null} group by {key} having count(*) > ?)",
            [config.max_block_size],
        ).fetchone()[0]
        on = " and ".join(f"l.{c} = r.{c}" for c in cols)
        b_on = " and ".join(f"b.{c} = l.{c}" for c in cols)
        selects.append(
            "select l.record_id as record_l, r.record_id as record_r, ? as rule "
            f"from {RECORDS} l inner join __id_block_{i} b on {b_on} "
            f"inner join {RECORDS} r on {on} and l.record_id < r.record_id"
        )
        rules.append(i)
        per_rule[name] = None
    if not selects:
        con.execute(f"create or replace temp table {PAIRS} (record_l varchar, record_r varchar, rule integer)")
        return {"candidate_pairs_per_rule": {}, "skipped_blocks_per_rule": skipped, "candidate_pairs": 0}
    con.execute(
        f"create or replace temp table {PAIRS} as select record_l, record_r, min(rule) as rule "
        f"from ({' union all '.join(selects)}) group by record_l, record_r",
        rules,
    )
    names = {i: "+".join(r) for i, r in enumerate(config.blocking_rules)}
    counts = dict(con.execute(f"select rule, count(*) from {PAIRS} group by rule").fetchall())
    per_rule = {names[i]: int(counts.get(i, 0)) for i in names if names[i] in per_rule}
    total = con.execute(f"select count(*) from {PAIRS}").fetchone()[0]
    return {"candidate_pairs_per_rule": per_rule, "skipped_blocks_per_rule": skipped, "candidate_pairs": int(total)}


def _gamma_select(attrs: list[str]) -> str:
    return ", ".join(f"{_level_sql(a)} as g_{a}" for a in attrs)


def estimate_weights(
    con: duckdb.DuckDBPyConnection, config: IdentityConfig, attrs: list[str], silver: pd.DataFrame
) -> pd.DataFrame:
    """m from deterministically linked pairs blended with PRIOR_M; u from random pairs, add-one smoothed."""
    fuzzy = [a for a in FUZZY_ATTRIBUTES if a in attrs]
    g = _gamma_select(fuzzy)
    n = int(config.u_sample_records)
    random_pairs = con.execute(
        f"""
        with s as (
            -- the records with the smallest seeded hash of their id: the same sample whatever order
            -- a parallel build left the records in (a reservoir sample, even `repeatable`, picks
            -- by position, and two fresh builds of the same data then disagreed on u, hence on matches)
            select * from {RECORDS}
            order by md5($seed || ':' || cast(record_id as varchar)), record_id
            limit $n
        )
        select {g} from s l inner join s r on l.record_id < r.record_id
        """,
        {"seed": str(int(config.seed)), "n": n},
    ).df()
    con.register("__id_silver", silver[["record_l", "record_r"]])
    matched = con.execute(
        f"""
        select {g} from __id_silver p
        inner join {RECORDS} l on l.record_id = p.record_l
        inner join {RECORDS} r on r.record_id = p.record_r
        """
    ).df()
    con.unregister("__id_silver")
    rows = []
    for a in fuzzy:
        levels = LEVELS[a]
        u_counts = random_pairs[f"g_{a}"].value_counts()
        m_counts = matched[f"g_{a}"].value_counts()
        u_total = sum(u_counts.get(k, 0) for k in range(levels))
        m_total = sum(m_counts.get(k, 0) for k in range(levels))
        for level in range(levels):
            u = (u_counts.get(level, 0) + 1) / (u_total + levels)
            m = (m_counts.get(level, 0) + PRIOR_STRENGTH * PRIOR_M[a][level]) / (m_total + PRIOR_STRENGTH)
            rows.append({"attribute": a, "level": level, "m": m, "u": u, "weight": math.log2(m / u)})
    weights = pd.DataFrame(rows)
    weights.attrs["silver_pairs"] = len(matched)
    weights.attrs["random_pairs"] = len(random_pairs)
    return weights


def score_pairs(
    con: duckdb.DuckDBPyConnection, attrs: list[str], weights: pd.DataFrame, min_weight: float
) -> pd.DataFrame:
    """Candidate pairs whose match weight reaches min_weight; the scoring stays in DuckDB, so
    tens of millions of candidate pairs never reach Python."""
    fuzzy = [a for a in FUZZY_ATTRIBUTES if a in attrs]
    if not fuzzy:
        return pd.DataFrame(columns=["record_l", "record_r", "rule", "weight"])
    terms = []
    for a in fuzzy:
        w = weights[weights["attribute"] == a]
        cases = " ".join(f"when {int(r.level)} then {float(r.weight)!r}" for r in w.itertuples())
        terms.append(f"(case g_{a} {cases} else 0.0 end)")
    return con.execute(
        f"""
        with g as (
            select p.record_l, p.record_r, p.rule, {_gamma_select(fuzzy)}
            from {PAIRS} p
            inner join {RECORDS} l on l.record_id = p.record_l
            inner join {RECORDS} r on r.record_id = p.record_r
        )
        select * from (select record_l, record_r, rule, {" + ".join(terms)} as weight from g)
        where weight >= ?
        """,
        [float(min_weight)],
    ).df()


def _cluster(records: pd.DataFrame, edges: pd.DataFrame, conflict_cols: list[str]) -> tuple[np.ndarray, pd.Series]:
    """Labels per record (index into records) and, per edge, '' or the reason it was refused."""
    n = len(records)
    index = pd.Series(np.arange(n), index=records["record_id"].to_numpy())
    li = index.loc[edges["record_l"]].to_numpy() if len(edges) else np.array([], dtype=np.int64)
    ri = index.loc[edges["record_r"]].to_numpy() if len(edges) else np.array([], dtype=np.int64)
    graph = coo_matrix((np.ones(len(li)), (li, ri)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    refused = pd.Series("", index=edges.index, dtype=object)
    if not conflict_cols or not len(edges):
        return labels, refused
    frame = records[conflict_cols].copy()
    frame["label"] = labels
    conflicted = np.zeros(labels.max() + 1, dtype=bool)
    for col in conflict_cols:
        counts = frame.dropna(subset=[col]).groupby("label")[col].nunique()
        conflicted[counts[counts > 1].index.to_numpy()] = True
    if not conflicted.any():
        return labels, refused
    # Greedy, strongest link first, inside conflicted components only.
    in_conflict = conflicted[labels[li]]
    order = (
        edges[in_conflict]
        .assign(_det=(edges["kind"] == "deterministic").astype(int))
        .sort_values(["_det", "weight", "record_l", "record_r"], ascending=[False, False, True, True])
    )
    parent = {}
    values = {}
    members = np.flatnonzero(conflicted[labels])
    for m in members:
        parent[m] = m
        values[m] = {c: records.iat[m, records.columns.get_loc(c)] for c in conflict_cols}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for idx, row in zip(order.index, order.itertuples(index=False), strict=False):
        a, b = find(index[row.record_l]), find(index[row.record_r])
        if a == b:
            continue
        clash = [
            c
            for c in conflict_cols
            if pd.notna(values[a][c]) and pd.notna(values[b][c]) and values[a][c] != values[b][c]
        ]
        if clash:
            refused.loc[idx] = "conflicting " + ", ".join(clash)
            continue
        parent[b] = a
        values[a] = {c: values[a][c] if pd.notna(values[a][c]) else values[b][c] for c in conflict_cols}
    new_labels = labels.copy()
    offset = labels.max() + 1
    for m in members:
        new_labels[m] = offset + find(m)
    return new_labels, refused


def resolve(
    con: duckdb.DuckDBPyConnection, source: str, config: IdentityConfig, identifiers: str | None = None
) -> ResolveResult:
    """Resolve the person records in `source` (a table or view in con) into clusters; `identifiers`,
    optional, holds declared identifiers of those records (record_id, id_type, id_value: a table,
    view or parenthesised query in con)."""
    attrs = standardise(con, source, config)
    declared_stats = declare_identifiers(con, identifiers)
    det, det_stats = deterministic_edges(con, config, attrs)
    det = det.assign(kind="deterministic", weight=np.inf)
    block_stats = candidate_pairs(con, config, attrs)
    weights = estimate_weights(con, config, attrs, det) if any(a in attrs for a in FUZZY_ATTRIBUTES) else None
    fuzzy = (
        score_pairs(con, attrs, weights, config.match_weight)
        if weights is not None
        else pd.DataFrame(columns=["record_l", "record_r", "rule", "weight"])
    )
    names = {i: "+".join(r) for i, r in enumerate(config.blocking_rules)}
    fuzzy["kind"] = "fuzzy"
    fuzzy["evidence"] = [
        f"fuzzy[{names[int(r)]}] w={w:.1f}" for r, w in zip(fuzzy["rule"], fuzzy["weight"], strict=False)
    ]
    # a pair linked both ways keeps the deterministic edge
    det_pairs = pd.MultiIndex.from_arrays([det["record_l"], det["record_r"]]).union(
        pd.MultiIndex.from_arrays([det["record_r"], det["record_l"]])
    )
    fuzzy = fuzzy[~pd.MultiIndex.from_arrays([fuzzy["record_l"], fuzzy["record_r"]]).isin(det_pairs)]
    edges = pd.concat(
        [
            det[["record_l", "record_r", "kind", "evidence", "weight"]],
            fuzzy[["record_l", "record_r", "kind", "evidence", "weight"]],
        ],
        ignore_index=True,
    )
    conflict_cols = [c for c in config.conflict_attributes if c in attrs]
    records = con.execute(
        f"select record_id{''.join(', ' + c for c in conflict_cols)} from {RECORDS} order by record_id"
    ).df()
    labels, refused = _cluster(records, edges, conflict_cols)
    edges["accepted"] = refused == ""
    edges["refused_reason"] = refused.replace("", None)
    assignments = pd.DataFrame({"record_id": records["record_id"], "label": labels})
    assignments["cluster_id"] = assignments.groupby("label")["record_id"].transform("min")
    assignments = assignments[["record_id", "cluster_id"]]
    sizes = assignments.groupby("cluster_id").size()
    stats = {
        "records": len(records),
        "clusters": len(sizes),
        "merge_rate": 1 - len(sizes) / max(len(records), 1),
        "max_cluster_size": int(sizes.max()) if len(sizes) else 0,
        "deterministic_links": len(det),
        "fuzzy_links": len(fuzzy),
        "refused_links": int((~edges["accepted"]).sum()),
        **block_stats,
        **declared_stats,
        **det_stats,
    }
    if weights is not None:
        stats["silver_pairs_for_m"] = weights.attrs.get("silver_pairs", 0)
    return ResolveResult(assignments=assignments, edges=edges, stats=stats, weights=weights)
