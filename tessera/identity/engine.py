"""The identity engine: standardise, link deterministically, score with Splink, cluster.

1. Standardise every mapped attribute into matching keys (lower-case names without accents or
   punctuation, ISO birth dates, postcodes without spaces, the last 9 phone digits, ...), and any
   `other_columns` by their kind.
2. Deterministic links: records sharing an email, phone, national id or extra identifier held by
   at most `max_records_per_identifier` records, or a declared identifier (an optional long table
   of record_id, id_type, id_value: a marketplace's person id, a login id) held by at most
   `max_records_per_declared_identifier`. A more widely shared value links nothing by itself but
   is still weighed as evidence, adjusted for how common it is.
3. Candidate pairs from capped blocking keys within a pair budget (blocking.py), scored by a
   Fellegi-Sunter model (model.py: Splink's comparison levels, term-frequency adjustments, u by
   random sampling, m by expectation maximisation and from the deterministic links; the prior
   estimated from the scores). A pair at or above `match_probability` is a probabilistic link.
4. Clustering (cluster.py): connected components of the links; a component holding two records
   whose comparison is strong evidence against a match is re-clustered greedily, refusing the links
   that would join them (a graded veto, not an exact-value one).

Incremental (DuckDB): given the state an earlier run returned (MatcherState), the model is reused
and only the pairs touching new or changed records are blocked and scored; the earlier scores of
the rest are reused (resolve's docstring says when it trains again instead).

All set-based work is SQL in DuckDB, or in Spark (tessera/identity/spark.py: the same steps and
SQL builders, in Spark's dialect where it differs, dialects.py); Python only drives it and loops
over the links of components that need re-clustering.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl

from tessera.identity import blocking, model
from tessera.identity.cluster import cluster, components
from tessera.identity.config import ATTRIBUTE_KINDS, STRONG_IDENTIFIERS, IdentityConfig
from tessera.identity.dialects import (
    DUCKDB,
    anti_join,
    iso_date,
    matches,
    quote,
    replace_all,
    runner,
    string_type,
    strip_accents,
)
from tessera.sql import ident

log = logging.getLogger(__name__)

RECORDS = "__id_records"
PAIRS = blocking.PAIRS
DECLARED = "__id_declared"
DECLARED_COLUMNS = ("record_id", "id_type", "id_value")


# Bump when standardisation, blocking keys or comparison levels change meaning: a stored model and
# stored pair scores of an older version are then not reused.
STATE_VERSION = 1
FINGERPRINTS = "__id_fingerprints"
_STATE_PAIRS = {"record_l": pl.String, "record_r": pl.String, "bf": pl.Float64}
_SCORED = {**_STATE_PAIRS, "match_probability": pl.Float64}
CHANGED = "__id_changed"


@dataclass
class MatcherState:
    """What a run keeps for the next one, so the next compares only its new and changed records.

    Pairs outside every linked group are not kept: they join nothing, and if new links later put
    their records in one group, the pairs inside it that were never scored are scored then."""

    config_key: str  # the mapping and matcher settings the model and scores belong to
    model: dict | None  # Splink's model JSON (every m and u); None: too few records to train
    prior: float
    expected_matches: float
    trained_records: int  # records the model was trained on
    fingerprints: pl.DataFrame  # record_id, fingerprint: a hash of the record's standardised values
    pairs: pl.DataFrame  # record_l, record_r, bf: the scored pairs inside linked groups

    def save(self, folder: Path) -> None:
        """Write the state into `folder` (state.json, fingerprints.parquet, pairs.parquet)."""
        folder.mkdir(parents=True, exist_ok=True)
        head = {k: getattr(self, k) for k in ("config_key", "model", "prior", "expected_matches", "trained_records")}
        self.fingerprints.write_parquet(folder / "fingerprints.parquet")
        self.pairs.write_parquet(folder / "pairs.parquet")
        # written last: a folder without it (an interrupted save) holds no state
        (folder / "state.json").write_text(json.dumps(head))

    @classmethod
    def load(cls, folder: Path) -> MatcherState | None:
        """The state saved in `folder`, or None when it holds none."""
        if not (folder / "state.json").is_file():
            return None
        head = json.loads((folder / "state.json").read_text())
        return cls(
            **head,
            fingerprints=pl.read_parquet(folder / "fingerprints.parquet"),
            pairs=pl.read_parquet(folder / "pairs.parquet"),
        )


@dataclass
class ResolveResult:
    assignments: pd.DataFrame  # record_id, cluster_id
    edges: pd.DataFrame  # record_l, record_r, kind, evidence, weight, accepted, refused_reason
    stats: dict = field(default_factory=dict)
    weights: pd.DataFrame | None = None  # attribute, level, m, u, weight
    timings: dict = field(default_factory=dict)  # step -> seconds
    state: MatcherState | None = None


def _text(columns: list[str], d: str = DUCKDB) -> str:
    parts = [f"cast({quote(c, d)} as {string_type(d)})" for c in columns]
    return parts[0] if len(parts) == 1 else f"concat_ws(' ', {', '.join(parts)})"


def _person_name_key(expr: str, d: str = DUCKDB) -> str:
    """Letters only: O'Connor, OConnor and o connor compare equal."""
    return f"nullif({replace_all(f'lower({strip_accents(expr, d)})', '[^a-z]', '', d)}, '')"


def _name_key(expr: str, keep_digits: bool = False, d: str = DUCKDB) -> str:
    allowed = "a-z0-9 " if keep_digits else "a-z "
    letters = replace_all(f"lower({strip_accents(expr, d)})", f"[^{allowed}]", " ", d)
    spaced = replace_all(letters, r"\s+", " ", d)
    return f"nullif(trim({spaced}), '')"


def _code_key(expr: str, d: str = DUCKDB) -> str:
    return f"nullif(upper({replace_all(expr, '[^A-Za-z0-9]', '', d)}), '')"


def _email_key(e: str, d: str = DUCKDB) -> str:
    valid = matches(f"lower(trim({e}))", r"^[^@\s]+@[^@\s]+\.[^@\s]+$", d)
    return f"case when {valid} then lower(trim({e})) end"


def _phone_key(e: str, d: str = DUCKDB) -> str:
    # the last 9 digits compare equal across +44 7700 900123, 07700 900123 and 0044-7700-900123
    digits = replace_all(e, "[^0-9]", "", d)
    return f"case when length({digits}) >= 7 then right({digits}, 9) end"


# attribute -> (SQL expression of the raw text, dialect) -> SQL of the standardised key
STANDARDISERS = {
    "given_name": _person_name_key,
    "surname": _person_name_key,
    "address": lambda e, d=DUCKDB: _name_key(e, keep_digits=True, d=d),
    "city": lambda e, d=DUCKDB: _name_key(e, keep_digits=True, d=d),
    "state": lambda e, d=DUCKDB: _name_key(e, keep_digits=True, d=d),
    "postcode": _code_key,
    "national_id": _code_key,
    "birth_date": iso_date,
    "email": _email_key,
    "phone": _phone_key,
}


OTHER_STANDARDISERS = {
    "name": lambda e, d=DUCKDB: _name_key(e, keep_digits=True, d=d),
    "text": lambda e, d=DUCKDB: _name_key(e, keep_digits=True, d=d),
    "category": lambda e, d=DUCKDB: _name_key(e, keep_digits=True, d=d),
    "code": _code_key,
    "date": STANDARDISERS["birth_date"],
}


def other_column(config: IdentityConfig, column: str) -> str:
    """The records table's column for an `other_columns` entry (input names may hold spaces)."""
    return f"o_{list(config.other_columns).index(column)}"


def standardised_select(config: IdentityConfig, d: str = DUCKDB) -> list[str]:
    """The select list of the records table: record_id and every standardised key."""
    select = [f"cast({quote(config.record_id, d)} as {string_type(d)}) as record_id"]
    for attr in config.attributes():
        select.append(f"{STANDARDISERS[attr](_text(config.columns[attr], d), d)} as {attr}")
    for column, kind in config.other_columns.items():
        select.append(f"{OTHER_STANDARDISERS[kind](_text([column], d), d)} as {other_column(config, column)}")
    for extra in config.extra_identifiers:
        select.append(f"{_code_key(_text([extra], d), d)} as {quote('x_' + extra, d)}")
    return select


def standardise(con, source: str, config: IdentityConfig) -> list[str]:
    """Create the records table of standardised records (con: a DuckDB connection or a runner);
    return the attributes present."""
    db = runner(con)
    db.create(RECORDS, f"select {', '.join(standardised_select(config, db.dialect))} from {source}")
    dupes = db.rows(f"select count(*) from (select record_id from {RECORDS} group by 1 having count(*) > 1)")[0][0]
    nulls = db.rows(f"select count(*) from {RECORDS} where record_id is null")[0][0]
    if dupes or nulls:
        raise ValueError(
            f"record id column '{config.record_id}' must be unique and not null: {dupes} duplicated, {nulls} null"
        )
    return config.attributes()


def compared_columns(config: IdentityConfig, attrs: list[str]) -> list[model.Compared]:
    """The records table's columns the model compares, with their kinds."""
    out = []
    for attr in attrs:
        swap = {"given_name": "surname", "surname": "given_name"}.get(attr)
        out.append(model.Compared(attr, ATTRIBUTE_KINDS[attr], attr, swap if swap in attrs else None))
    for column, kind in config.other_columns.items():
        out.append(model.Compared(other_column(config, column), kind, column))
    return out


def _identifier_columns(config: IdentityConfig, attrs: list[str]) -> list[str]:
    return [a for a in STRONG_IDENTIFIERS if a in attrs] + [f"x_{e}" for e in config.extra_identifiers]


def declare_identifiers(con, identifiers: str | None) -> dict:
    """Create the temp table of declared identifiers (record_id, id_type, id_value), each pair once,
    from `identifiers` (a table, view or parenthesised query with those columns; None: none), and
    return what was declared. Types are compared lower-case and values exactly, both trimmed; a row
    without all three is no identifier. A row whose record is not among the records links nothing
    and is counted."""
    db = runner(con)
    text = string_type(db.dialect)
    if db.dialect == DUCKDB:
        db.con.execute(
            f"create or replace temp table {DECLARED} (record_id varchar, id_type varchar, id_value varchar)"
        )
    else:
        db.create(DECLARED, f"select {', '.join(f'cast(null as {text}) as {c}' for c in DECLARED_COLUMNS)} where false")
    if identifiers is None:
        return {"declared_identifiers": 0, "declared_identifiers_of_unknown_records": 0}
    db.create(
        "__id_declared_all",
        f"""
        select distinct record_id, id_type, id_value from (
            select
                nullif(trim(cast(record_id as {text})), '') as record_id,
                nullif(lower(trim(cast(id_type as {text}))), '') as id_type,
                nullif(trim(cast(id_value as {text})), '') as id_value
            from {identifiers}
        )
        where record_id is not null and id_type is not null and id_value is not null
        """,
    )
    db.append(
        DECLARED,
        f"select d.* from __id_declared_all as d where d.record_id in (select record_id from {RECORDS})",
    )
    kept, unknown = db.rows(
        f"select count(*) filter (where record_id in (select record_id from {RECORDS})), "
        f"count(*) filter (where record_id not in (select record_id from {RECORDS})) from __id_declared_all"
    )[0]
    db.drop("__id_declared_all")
    return {"declared_identifiers": int(kept), "declared_identifiers_of_unknown_records": int(unknown)}


def declared_edges(con, config: IdentityConfig) -> tuple[pd.DataFrame, dict]:
    """Links between records sharing a declared (id_type, id_value), to the smallest record of the
    value, evidence the id type; and per id type, the values shared by more records than
    max_records_per_declared_identifier (those link nothing)."""
    db = runner(con)
    cap = config.max_records_per_declared_identifier
    db.create(
        "__id_declared_values",
        f"""
        select id_type, id_value, count(*) as records, min(record_id) as anchor
        from {DECLARED} group by id_type, id_value
        """,
    )
    overshared = dict(
        db.rows(
            "select id_type, count(*) from __id_declared_values where records > ? group by id_type order by id_type",
            [cap],
        )
    )
    edges = db.pandas(
        f"""
        select v.anchor as record_l, d.record_id as record_r, d.id_type as evidence
        from {DECLARED} as d
        inner join __id_declared_values as v on v.id_type = d.id_type and v.id_value = d.id_value
        where v.records between 2 and ? and d.record_id <> v.anchor
        """,
        [cap],
    )
    largest = db.rows("select coalesce(max(records), 0) from __id_declared_values")[0][0]
    db.drop("__id_declared_values")
    return edges, {
        "declared_links": len(edges),
        "overshared_declared_identifier_values": {k: int(v) for k, v in overshared.items()},
        "largest_declared_identifier_records": int(largest),
    }


def deterministic_edges(con, config: IdentityConfig, attrs: list[str]) -> tuple[pd.DataFrame, dict]:
    """Links between records sharing a strong, extra or declared identifier (declare_identifiers
    first), evidence the identifiers joined with '+', and the values too widely shared to link."""
    db = runner(con)
    frames, overshared = [], {}
    for col in _identifier_columns(config, attrs):
        c = quote(col, db.dialect)
        overshared[col] = db.rows(
            f"select count(*) from (select {c} from {RECORDS} where {c} is not null group by 1 having count(*) > ?)",
            [config.max_records_per_identifier],
        )[0][0]
        frames.append(
            db.pandas(
                f"""
                with g as (select {c} as v, record_id from {RECORDS} where {c} is not null),
                ok as (select v, min(record_id) as anchor from g group by v having count(*) between 2 and ?)
                select ok.anchor as record_l, g.record_id as record_r, ? as evidence
                from g inner join ok on ok.v = g.v
                where g.record_id <> ok.anchor
                """,
                [config.max_records_per_identifier, col.removeprefix("x_")],
            )
        )
    declared, declared_stats = declared_edges(db, config)
    frames.append(declared)
    stats = {"overshared_identifier_values": overshared, **declared_stats}
    edges = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else None
    if edges is None:
        return pd.DataFrame({"record_l": [], "record_r": [], "evidence": []}, dtype=object), stats
    edges = edges.groupby(["record_l", "record_r"], as_index=False)["evidence"].agg(lambda s: "+".join(sorted(set(s))))
    return edges, stats


_EMPTY_LINKS = {
    "record_l": pl.String,
    "record_r": pl.String,
    "kind": pl.String,
    "evidence": pl.String,
    "weight": pl.Float64,
}


def _scored(db, prior: float, threshold: float, det: pd.DataFrame) -> pl.DataFrame:
    """The scored pairs that can link: at or above the match probability `threshold`, or joined
    by a deterministic link in `det`; with their posterior match probability, ordered (the
    clustering's tie-breaks follow the order of the pairs)."""
    pairs = {"record_l": pl.String, "record_r": pl.String}
    det_pairs = pl.from_pandas(det[["record_l", "record_r"]]).cast(pairs) if len(det) else pl.DataFrame(schema=pairs)
    db.register("__id_det_links", det_pairs)
    probability = model.match_probability("s.bf", prior)
    scored = db.frame(
        f"""
        select s.record_l, s.record_r, s.bf, {probability} as match_probability from {model.SCORED} as s
        where {probability} >= {float(threshold)!r}
            or exists (select 1 from __id_det_links as d where least(d.record_l, d.record_r) = s.record_l
                       and greatest(d.record_l, d.record_r) = s.record_r)
        """
    ).sort("record_l", "record_r")
    db.unregister("__id_det_links")
    return scored


def _pair_key() -> list[pl.Expr]:
    return [
        pl.min_horizontal("record_l", "record_r").alias("_a"),
        pl.max_horizontal("record_l", "record_r").alias("_b"),
    ]


def _with_identifier_evidence(scored: pl.DataFrame, det: pd.DataFrame, weight: float) -> pl.DataFrame:
    """The pairs a deterministic link joins weigh `weight` more: the shared identifier is evidence
    the compared attributes do not hold (a declared person id, a loyalty card)."""
    if not len(det) or scored.is_empty():
        return scored
    linked = pl.from_pandas(det[["record_l", "record_r"]]).cast(pl.String).with_columns(_pair_key()).select("_a", "_b")
    return (
        scored.with_columns(_pair_key())
        .join(linked.with_columns(_det=pl.lit(True)), on=["_a", "_b"], how="left")
        .with_columns(bf=pl.when(pl.col("_det")).then(pl.col("bf") + weight).otherwise(pl.col("bf")))
        .drop("_a", "_b", "_det")
    )


def _deterministic_links(det: pd.DataFrame, scored: pl.DataFrame) -> pl.DataFrame:
    """Deterministic links with their pair's weight (infinite when the pair was not compared)."""
    if not len(det):
        return pl.DataFrame(schema=_EMPTY_LINKS)
    return (
        pl.from_pandas(det[["record_l", "record_r", "evidence"]])
        .cast(pl.String)
        .with_columns(_pair_key())
        .join(scored.with_columns(_pair_key()).select("_a", "_b", "bf"), on=["_a", "_b"], how="left")
        .select(
            "record_l",
            "record_r",
            kind=pl.lit("deterministic"),
            evidence="evidence",
            weight=pl.col("bf").fill_null(float("inf")),
        )
    )


def _fuzzy_links(scored: pl.DataFrame, det_links: pl.DataFrame, threshold: float) -> pl.DataFrame:
    """Scored pairs at or above the match probability that no deterministic link already joins."""
    return (
        scored.filter(pl.col("match_probability") >= threshold)
        .with_columns(_pair_key())
        .join(det_links.with_columns(_pair_key()).select("_a", "_b"), on=["_a", "_b"], how="anti")
        .select(
            "record_l",
            "record_r",
            kind=pl.lit("fuzzy"),
            evidence=pl.format(
                "probability {} (weight {})", pl.col("match_probability").round(4), pl.col("bf").round(1)
            ),
            weight="bf",
        )
    )


def _unscored_pairs_in_groups(db, record_ids: pl.Series, labels: np.ndarray, max_group: int) -> int:
    """Create the temp table __id_group_pairs of the pairs inside each linked group (labels: the
    group of each record) of 3 to `max_group` records that were never scored; return how many."""
    groups = pl.DataFrame({"record_id": record_ids, "g": labels}).with_columns(size=pl.len().over("g"))
    db.register("__id_groups", groups.filter((pl.col("size") >= 3) & (pl.col("size") <= max_group)))
    db.create(
        "__id_group_pairs",
        f"""
        select a.record_id as record_l, b.record_id as record_r
        from __id_groups as a inner join __id_groups as b on a.g = b.g and a.record_id < b.record_id
        {anti_join(db.dialect)} {model.SCORED} as s
            on s.record_l = least(a.record_id, b.record_id) and s.record_r = greatest(a.record_id, b.record_id)
        """,
    )
    db.unregister("__id_groups")
    return db.rows("select count(*) from __id_group_pairs")[0][0]


def resolve(
    con: duckdb.DuckDBPyConnection,
    source: str,
    config: IdentityConfig,
    identifiers: str | None = None,
    previous: MatcherState | None = None,
    retrain: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ResolveResult:
    """Resolve the person records in `source` (a table or view in con) into clusters; `identifiers`,
    optional, holds declared identifiers of those records (record_id, id_type, id_value: a table,
    view or parenthesised query in con).

    `previous`, optional, is the state an earlier run returned: its model scores this run, and only
    the pairs touching records that are new or changed since then are blocked and scored; the
    earlier scores of the other pairs are reused. The model is trained again (and every pair
    scored) when there is no earlier state, when `retrain`, when the mapping or matcher settings
    changed, or when the record count moved by more than `config.retrain_growth` since training.
    The result's stats say which (`training`).

    `con` may also be a runner (tessera.identity.dialects): tessera.identity.spark.resolve runs the
    same steps on Spark, without `previous` (incremental matching is DuckDB-only).

    `progress`, optional, is called with one line (counts only, no record's value) as each phase
    ends: standardise and deterministic links, blocking, the model, the pairs in linked groups,
    clustering."""
    db = runner(con)
    if previous is not None and db.dialect != DUCKDB:
        raise ValueError("incremental matching (previous) runs on DuckDB only")
    try:
        return _resolve(db, source, config, identifiers, previous, retrain, progress)
    finally:
        db.drop_splink_tables()


def config_key(config: IdentityConfig, compared: list[model.Compared]) -> str:
    """What a stored model and its pair scores depend on: the compared columns and their kinds, the
    blocking, the training settings, the engine and Splink versions."""
    from splink import __version__ as splink_version

    payload = {
        "compared": [[c.column, c.kind, c.label, c.swap_with] for c in compared],
        "blocking_rules": [list(r) for r in config.blocking_rules],
        "max_block_size": config.max_block_size,
        "max_pairs_per_record": config.max_pairs_per_record,
        "u_max_pairs": config.u_max_pairs,
        "em_max_pairs": config.em_max_pairs,
        "min_records_to_train": config.min_records_to_train,
        "seed": config.seed,
        "version": STATE_VERSION,
        "splink": splink_version,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _retrain_reason(
    previous: MatcherState | None, key: str, n: int, config: IdentityConfig, retrain: bool
) -> str | None:
    """Why this run trains and scores every pair, or None: it reuses the previous model and scores."""
    if previous is None:
        return "no earlier run"
    if retrain:
        return "retrain requested"
    if previous.config_key != key:
        return "the mapping or the matcher settings changed since the earlier run"
    if previous.model is None and n >= config.min_records_to_train:
        return f"the earlier run had too few records to train ({previous.trained_records})"
    base = max(previous.trained_records, 1)
    if abs(n - base) / base > config.retrain_growth:
        return (
            f"{n:,} records against {previous.trained_records:,} at training: more than "
            f"{config.retrain_growth:.0%} changed (retrain_growth)"
        )
    return None


def _fingerprints(con: duckdb.DuckDBPyConnection) -> None:
    """FINGERPRINTS (record_id, fingerprint): a hash of each record's standardised values, so the
    next run knows which records changed."""
    columns = [r[0] for r in con.execute(f"select * from {RECORDS} limit 0").description if r[0] != "record_id"]
    values = " || chr(31) || ".join(f"coalesce(cast({ident(c)} as varchar), chr(30))" for c in columns) or "''"
    con.execute(
        f"create or replace temp table {FINGERPRINTS} as select record_id, md5({values}) as fingerprint from {RECORDS}"
    )


def _changed_records(con: duckdb.DuckDBPyConnection, previous: MatcherState) -> int:
    """CHANGED (record_id): the records that are new, or whose standardised values changed."""
    con.register("__id_prev_fingerprints", previous.fingerprints)
    con.execute(
        f"""
        create or replace temp table {CHANGED} as
        select f.record_id from {FINGERPRINTS} as f
        left join __id_prev_fingerprints as p on p.record_id = f.record_id and p.fingerprint = f.fingerprint
        where p.record_id is null
        """
    )
    con.unregister("__id_prev_fingerprints")
    return con.execute(f"select count(*) from {CHANGED}").fetchall()[0][0]


def _reuse_scores(con: duckdb.DuckDBPyConnection, previous: MatcherState) -> int:
    """Add to SCORED the earlier run's scores of pairs between records still here and unchanged
    (and not scored again this run); returns how many."""
    con.register("__id_prev_pairs", previous.pairs)
    before = con.execute(f"select count(*) from {model.SCORED}").fetchall()[0][0]
    con.execute(
        f"""
        insert into {model.SCORED}
        select p.record_l, p.record_r, p.bf from __id_prev_pairs as p
        semi join {RECORDS} as a on a.record_id = p.record_l
        semi join {RECORDS} as b on b.record_id = p.record_r
        anti join {CHANGED} as c on c.record_id = p.record_l
        anti join {CHANGED} as d on d.record_id = p.record_r
        anti join {model.SCORED} as s on s.record_l = p.record_l and s.record_r = p.record_r
        """
    )
    con.unregister("__id_prev_pairs")
    return con.execute(f"select count(*) from {model.SCORED}").fetchall()[0][0] - before


def _pairs_in_groups(db, record_ids: pl.Series, groups: np.ndarray) -> pl.DataFrame:
    """The scored pairs (raw weight) whose records are in one linked group: what the clustering
    weighs, and what the next run reuses. db: a runner (dialects.py)."""
    db.register("__id_groups", pl.DataFrame({"record_id": record_ids, "g": groups}))
    pairs = db.frame(
        f"""
        select s.record_l, s.record_r, s.bf from {model.SCORED} as s
        inner join __id_groups as a on a.record_id = s.record_l
        inner join __id_groups as b on b.record_id = s.record_r
        where a.g = b.g
        """
    ).sort("record_l", "record_r")
    db.unregister("__id_groups")
    return pairs


# the phases of a resolution as its progress lines name them, by their key in stats["timings"]
PHASES = {
    "standardise_and_deterministic": "standardise",
    "blocking": "block",
    "model": "score",
    "group_pairs": "check groups",
    "cluster": "cluster",
}


def _resolve(
    db,
    source: str,
    config: IdentityConfig,
    identifiers: str | None,
    previous: MatcherState | None,
    retrain: bool,
    progress: Callable[[str], None] | None = None,
) -> ResolveResult:
    timings: dict[str, float] = {}
    started = time.perf_counter()

    def lap(step: str, done: str = "") -> None:
        nonlocal started
        now = time.perf_counter()
        timings[step] = round(now - started, 3)
        started = now
        if progress is not None:
            progress(f"{PHASES[step]} done in {timings[step]:.1f} s{': ' + done if done else ''}")

    con = db.con if db.dialect == DUCKDB else None  # the incremental steps are DuckDB SQL
    attrs = standardise(db, source, config)
    declared_stats = declare_identifiers(db, identifiers)
    det, det_stats = deterministic_edges(db, config, attrs)
    compared = compared_columns(config, attrs)
    n = db.rows(f"select count(*) from {RECORDS}")[0][0]
    key = config_key(config, compared)
    if con is not None:
        _fingerprints(con)
    reason = _retrain_reason(previous, key, n, config, retrain)
    incremental = reason is None and previous is not None and con is not None
    changed = _changed_records(con, previous) if incremental else n
    lap("standardise_and_deterministic", f"{n:,} records, {len(det):,} deterministic pairs")
    db.register("__id_det_pairs", det[["record_l", "record_r"]])
    # key families are named as users write them in blocking_rules: the attribute, or the input column
    blocking.build_keys(db, RECORDS, [(c.column, c.kind, c.label) for c in compared], config.blocking_rules)
    budget = None if config.max_pairs_per_record is None else config.max_pairs_per_record * n
    block_stats = blocking.candidate_pairs(
        db, config.max_block_size, "__id_det_pairs", CHANGED if incremental else None, budget
    )
    db.unregister("__id_det_pairs")
    lap("blocking", f"{block_stats['candidate_pairs']:,} candidate pairs")
    fitted = None
    notes = []
    reused_pairs = 0
    if compared and n < config.min_records_to_train:
        notes.append(
            f"{n} records: too few to estimate how often attributes agree by chance "
            f"(min_records_to_train {config.min_records_to_train}); deterministic links only"
        )
    elif compared and incremental and previous.model is not None:
        fitted = model.Fitted(db, RECORDS, compared, n, config, trained=previous.model)
        fitted.score(PAIRS, model.SCORED)
        reused_pairs = _reuse_scores(con, previous)
        fitted.prior, fitted.expected_matches = previous.prior, previous.expected_matches
    elif compared and block_stats["candidate_pairs"]:
        labelled = pl.from_pandas(det[["record_l", "record_r", "evidence"]]).cast(pl.String) if len(det) else None
        fitted = model.fit_and_score(db, RECORDS, PAIRS, compared, n, config, labelled)
    lap("model", "pairs scored" if fitted is not None else "no model: deterministic links only")
    # only the pairs that can link come into Python: most candidate pairs are far apart
    scored = (
        _scored(db, fitted.prior, config.match_probability, det) if fitted is not None else pl.DataFrame(schema=_SCORED)
    )
    scored = _with_identifier_evidence(scored, det, config.identifier_weight)
    det_links = _deterministic_links(det, scored)
    fuzzy_links = _fuzzy_links(scored, det_links, config.match_probability)
    links = pl.concat([det_links, fuzzy_links]).sort(["record_l", "record_r"])
    record_ids = db.frame(f"select record_id from {RECORDS} order by record_id")["record_id"]
    groups = components(record_ids, links)
    unscored = 0
    if fitted is not None:
        # pairs inside a linked group that blocking never compared: scored now, so a chain of
        # links cannot join two records whose own comparison says they are different people
        unscored = _unscored_pairs_in_groups(db, record_ids, groups, config.max_group_to_check)
        if unscored:
            fitted.score("__id_group_pairs", model.SCORED, append=True)
    in_groups = _pairs_in_groups(db, record_ids, groups) if fitted is not None else pl.DataFrame(schema=_STATE_PAIRS)
    lap("group_pairs", f"{unscored:,} more pairs inside linked groups scored")
    unchecked = int((np.bincount(groups) > config.max_group_to_check).sum()) if len(groups) else 0
    if unchecked:
        log.warning(
            "%d linked groups hold more than %d records: not every pair in them was compared; they are split "
            "on the cannot-links blocking found, strongest link first",
            unchecked,
            config.max_group_to_check,
        )
    scored = _with_identifier_evidence(in_groups, det, config.identifier_weight)
    cannot = scored.filter(pl.col("bf") <= config.cannot_link_weight)
    labels, refused = cluster(
        record_ids,
        links,
        scored.select("record_l", "record_r", "bf"),
        config.cannot_link_weight,
        config.min_group_weight,
        config.max_group_to_check,
    )
    # which attribute made each contradiction inside a linked group: a mapped column that vetoes
    # many links (a placeholder value, a column mapped to the wrong attribute) shows up here
    against = fitted.strongest_against(cannot.select("record_l", "record_r")) if fitted is not None else None
    by_attribute = (
        dict(against.group_by("attribute").len().sort(["len", "attribute"], descending=[True, False]).iter_rows())
        if against is not None
        else {}
    )
    lap("cluster", f"{int(np.unique(labels).size):,} people, {int(refused.is_not_null().sum()):,} links refused")
    edges = links.with_columns(accepted=refused.is_null(), refused_reason=refused)
    assignments = (
        pl.DataFrame({"record_id": record_ids, "label": labels})
        .with_columns(cluster_id=pl.col("record_id").min().over("label"))
        .select("record_id", "cluster_id")
    )
    sizes = assignments.group_by("cluster_id").len()
    refused_count = int(refused.is_not_null().sum())
    stats = {
        "records": len(record_ids),
        "clusters": sizes.height,
        "merge_rate": 1 - sizes.height / len(record_ids) if len(record_ids) else 0.0,
        "max_cluster_size": int(sizes["len"].max()) if sizes.height else 0,
        "deterministic_links": det_links.height,
        "fuzzy_links": fuzzy_links.height,
        "refused_links": refused_count,
        "cannot_link_pairs": cannot.height,
        "cannot_links_by_attribute": by_attribute,
        "group_pairs_scored": unscored,
        "groups_too_large_to_check": unchecked,
        **block_stats,
        **declared_stats,
        **det_stats,
    }
    stats["training"] = (
        f"incremental: the model trained on {previous.trained_records:,} records scored the pairs of "
        f"{changed:,} new or changed records; {reused_pairs:,} earlier pair scores reused"
        if incremental
        else f"full: {reason}"
    )
    stats["changed_records"] = changed
    stats["reused_pair_scores"] = reused_pairs
    stats["training_notes"] = notes
    if fitted is not None:
        stats["prior_match_probability"] = fitted.prior
        stats["expected_matching_pairs"] = round(fitted.expected_matches, 1)
        stats["training_notes"] = notes + fitted.notes
    if con is None:  # no state off DuckDB: incremental matching is DuckDB-only
        state = None
    else:
        state = _state(con, key, fitted, previous, incremental, n, in_groups)
    return ResolveResult(
        assignments=assignments.to_pandas(),
        edges=edges.to_pandas(),
        stats=stats,
        weights=fitted.parameters.to_pandas() if fitted is not None else None,
        timings=timings,
        state=state,
    )


def _state(con, key, fitted, previous, incremental, n, in_groups: pl.DataFrame) -> MatcherState:
    return MatcherState(
        config_key=key,
        model=(previous.model if incremental else fitted.model_json()) if fitted is not None else None,
        prior=fitted.prior if fitted is not None else 0.0,
        expected_matches=fitted.expected_matches if fitted is not None else 0.0,
        trained_records=previous.trained_records if incremental else n,
        fingerprints=con.sql(f"select record_id, fingerprint from {FINGERPRINTS} order by record_id").pl(),
        pairs=in_groups,
    )
