"""The identity map kept between runs: this run's clusters turned into stable ids, written with
their merge history, links and run statistics; the checks' and the evaluation's reads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl

from tessera import sql
from tessera.db import table_exists
from tessera.identity.engine import MatcherState, ResolveResult
from tessera.identity.evaluate import evaluate_clusters
from tessera.identity.stable_ids import HISTORY_COLUMNS, assign_stable_ids

MAP_COLUMNS = ["record_id", "customer_id", "first_seen_at", "assigned_at"]


@dataclass
class Persisted:
    records: int
    events: pd.DataFrame  # run_id, event_at, HISTORY_COLUMNS
    stats: dict


def previous_map(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    if not table_exists(con, "identity", "identity_map"):
        return pd.DataFrame(columns=MAP_COLUMNS)
    return con.execute("select record_id, customer_id, first_seen_at, assigned_at from identity.identity_map").df()


def previous_state(con: duckdb.DuckDBPyConnection) -> MatcherState | None:
    """The matcher state the last resolution kept (its model, record fingerprints and the scored
    pairs inside linked groups), or None before the first run or when it was dropped."""
    tables = ("matcher_model", "record_fingerprints", "matcher_pairs")
    if not all(table_exists(con, "identity", t) for t in tables):
        return None
    row = con.execute(
        "select config_key, model_json, prior, expected_matches, trained_records from identity.matcher_model"
    ).fetchall()
    if len(row) != 1:
        return None
    key, model_json, prior, expected, trained = row[0]
    return MatcherState(
        config_key=key,
        model=json.loads(model_json) if model_json is not None else None,
        prior=prior,
        expected_matches=expected,
        trained_records=trained,
        fingerprints=con.sql("select record_id, fingerprint from identity.record_fingerprints").pl(),
        pairs=con.sql("select record_l, record_r, bf from identity.matcher_pairs").pl(),
    )


def _write_state(con: duckdb.DuckDBPyConnection, state: MatcherState, now: datetime) -> None:
    model = pl.DataFrame(
        {
            "config_key": [state.config_key],
            "model_json": [json.dumps(state.model) if state.model is not None else None],
            "prior": [state.prior],
            "expected_matches": [state.expected_matches],
            "trained_records": [state.trained_records],
            "saved_at": [now],
        },
        schema_overrides={"model_json": pl.String},
    )
    for name, frame in (("model", model), ("fingerprints", state.fingerprints), ("pairs", state.pairs)):
        con.register(f"state_{name}_df", frame)
    try:
        con.execute("create or replace table identity.matcher_model as select * from state_model_df")
        con.execute("create or replace table identity.record_fingerprints as select * from state_fingerprints_df")
        con.execute("create or replace table identity.matcher_pairs as select * from state_pairs_df")
    finally:
        for name in ("model", "fingerprints", "pairs"):
            con.unregister(f"state_{name}_df")


def persist(con: duckdb.DuckDBPyConnection, result: ResolveResult, run_id: str, now: datetime) -> Persisted:
    """Stable ids for `result` against the previous map, then the map, the merge history, the links
    and the run's statistics written in one transaction."""
    con.execute(sql.load(__file__, "history_tables"))
    previous = previous_map(con)
    stable = assign_stable_ids(previous, result.assignments, result.edges)
    current = stable.identity_map.merge(
        previous.rename(columns={"customer_id": "previous_customer_id"}), on="record_id", how="left"
    )
    changed = current["previous_customer_id"].notna() & (current["customer_id"] != current["previous_customer_id"])
    current["first_seen_at"] = current["first_seen_at"].fillna(now)
    current["assigned_at"] = current["assigned_at"].where(~changed & current["previous_customer_id"].notna(), now)
    events = stable.events.copy()
    events.insert(0, "event_at", now)
    events.insert(0, "run_id", run_id)
    links = result.edges.assign(run_id=run_id)
    stats = {
        **result.stats,
        "id_changes": int(changed.sum()),
        "new_records": int(current["previous_customer_id"].isna().sum()),
    }
    con.register("map_df", current[MAP_COLUMNS])
    con.register("events_df", events[["run_id", "event_at", *HISTORY_COLUMNS]])
    con.register("links_df", links)
    con.execute("begin transaction")
    try:
        con.execute(sql.load(__file__, "write_resolution"))
        if result.state is not None:
            _write_state(con, result.state, now)
        con.execute(sql.load(__file__, "record_run"), {
            "run_id": run_id,
            "run_at": now,
            **{k: stats[k] for k in ("records", "clusters", "merge_rate", "max_cluster_size", "deterministic_links",
                                     "fuzzy_links", "refused_links", "candidate_pairs", "id_changes")},
            "stats": json.dumps(stats, default=str),
        })  # fmt: skip
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    finally:
        for name in ("map_df", "events_df", "links_df"):
            con.unregister(name)
    return Persisted(len(current), events, stats)


def largest_clusters(con: duckdb.DuckDBPyConnection, n: int = 5) -> list[int]:
    """The sizes (person records) of the `n` largest customers, largest first."""
    rows = con.execute(
        "select count(*) as size from identity.identity_map group by customer_id order by size desc limit ?", [n]
    ).fetchall()
    return [size for (size,) in rows]


def last_merge_rates(con: duckdb.DuckDBPyConnection) -> list[float]:
    """The merge rates of the last two resolutions, newest first."""
    rows = con.execute("select merge_rate from identity.resolution_runs order by run_at desc limit 2").fetchall()
    return [rate for (rate,) in rows]


def evaluate_against_truth(
    con: duckdb.DuckDBPyConnection, truth_path: Path, run_id: str, now: datetime
) -> tuple[dict, int]:
    """Pairwise and cluster metrics of the identity map against the generator's ground truth,
    appended to identity.evaluation_history; returns (metrics, records evaluated)."""
    truth = pd.read_csv(truth_path, dtype=str)
    truth = truth.loc[truth["source"] == "customers", ["record_id", "person_id"]]
    predicted = con.execute("select record_id, customer_id as cluster_id from identity.identity_map").df()
    metrics = evaluate_clusters(predicted, truth)
    con.execute(
        "create table if not exists identity.evaluation_history (run_id varchar, evaluated_at timestamp, metrics varchar)"
    )
    con.execute("insert into identity.evaluation_history values (?, ?, ?)", [run_id, now, json.dumps(metrics)])
    return metrics, len(predicted)


def evaluation_history(con: duckdb.DuckDBPyConnection, n: int = 10) -> list[tuple[datetime, dict]]:
    rows = con.execute(
        "select evaluated_at, metrics from identity.evaluation_history order by evaluated_at desc limit ?", [n]
    ).fetchall()
    return [(at, json.loads(metrics)) for at, metrics in rows]
