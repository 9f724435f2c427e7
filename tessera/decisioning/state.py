"""The bandit's state: per action and variant, closed messages and conversions; versioned.

decisioning.sends holds every message the outbox published (written when campaign_outbox is
swapped in). A message is *closed* once its attribution window is over (decided_on + window <=
the current as-of day); it *converted* when, inside the window, its customer clicked it (a valid
email event with event_type 'click' and campaign_id = message_id) or placed a completed order.

decisioning.bandit_state_versions keeps every state: a new version is added only when the counts
(or the catalogue's variants) differ from the latest one, so re-materializing on unchanged data
keeps the version, and every decision names the version it drew from.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from tessera import sql
from tessera.decisioning import bandit
from tessera.decisioning.catalogue import Catalogue
from tessera.decisioning.decide import AS_OF, SENDS_DDL

VERSIONS_DDL = """
create table if not exists decisioning.bandit_state_versions (
    version integer, created_at timestamp, as_of_date date, action_id varchar, variant_id varchar,
    trials bigint, conversions bigint, alpha double, beta double, posterior_mean double,
    traffic_share double, mlflow_run_id varchar
)
"""


def outcome_counts(con, window_days: int) -> pd.DataFrame:
    """Closed messages and conversions per action and variant."""
    return con.execute(sql.load(__file__, "outcome_counts"), {"window_days": int(window_days)}).df()


def posteriors_from(counts: pd.DataFrame, catalogue: Catalogue) -> dict[str, bandit.Posterior]:
    """Each action's posterior over the catalogue's current variants (outcomes of variants no
    longer in the catalogue are left out)."""
    out = {}
    for action in catalogue.actions:
        names = tuple(v.id for v in action.variants)
        trials = np.zeros(len(names), dtype=np.int64)
        conversions = np.zeros(len(names), dtype=np.int64)
        rows = counts[counts["action_id"] == action.id]
        for variant, t, c in zip(rows["variant_id"], rows["trials"], rows["conversions"], strict=True):
            if variant in names:
                trials[names.index(variant)] = t
                conversions[names.index(variant)] = c
        out[action.id] = bandit.Posterior(names, trials, conversions)
    return out


def current_version(con) -> tuple[int, pd.DataFrame]:
    rows = con.execute(
        "select * from decisioning.bandit_state_versions "
        "where version = (select max(version) from decisioning.bandit_state_versions) order by action_id, variant_id"
    ).df()
    return (int(rows["version"].iloc[0]) if len(rows) else 0), rows


def state_frame(posteriors: dict[str, bandit.Posterior], seed: int) -> pd.DataFrame:
    """One row per action and variant: counts, Beta parameters, posterior mean and the traffic
    share Thompson sampling gives it now."""
    rows = []
    for action_id, p in posteriors.items():
        shares = bandit.allocation(p, bandit.rng_for(seed, 0, 0, action_id))
        for i, variant in enumerate(p.variants):
            rows.append(
                {
                    "action_id": action_id,
                    "variant_id": variant,
                    "trials": int(p.trials[i]),
                    "conversions": int(p.conversions[i]),
                    "alpha": float(p.alpha[i]),
                    "beta": float(p.beta[i]),
                    "posterior_mean": float(p.mean[i]),
                    "traffic_share": float(shares[i]),
                }
            )
    return pd.DataFrame(rows).sort_values(["action_id", "variant_id"]).reset_index(drop=True)


def update_state(con, catalogue: Catalogue, seed: int) -> tuple[int, bool, pd.DataFrame, dict[str, bandit.Posterior]]:
    """Recompute the state from outcomes; add a version if it changed.
    Returns (version, whether it is new, the state rows, the posteriors)."""
    con.execute("create schema if not exists decisioning")
    con.execute(SENDS_DDL)
    con.execute(VERSIONS_DDL)
    counts = outcome_counts(con, catalogue.attribution_days)
    posteriors = posteriors_from(counts, catalogue)
    state = state_frame(posteriors, seed)
    version, latest = current_version(con)
    key = ["action_id", "variant_id", "trials", "conversions"]
    unchanged = version > 0 and latest[key].reset_index(drop=True).equals(
        state[key].astype(latest[key].dtypes.to_dict())
    )
    if unchanged:
        return version, False, latest, posteriors
    version += 1
    rows = state.assign(
        version=version,
        created_at=datetime.now(UTC).replace(tzinfo=None),
        as_of_date=con.execute(f"select {AS_OF}").fetchall()[0][0],
        mlflow_run_id=None,
    )
    con.register("__bandit_state", rows)
    try:
        con.execute("""
            insert into decisioning.bandit_state_versions
            select version, created_at, as_of_date, action_id, variant_id, trials, conversions, alpha, beta,
                posterior_mean, traffic_share, mlflow_run_id
            from __bandit_state
        """)
    finally:
        con.unregister("__bandit_state")
    return version, True, current_version(con)[1], posteriors


def record_run(con, version: int, run_id: str) -> None:
    con.execute("update decisioning.bandit_state_versions set mlflow_run_id = ? where version = ?", [run_id, version])


def exploration(posteriors: dict[str, bandit.Posterior], state: pd.DataFrame) -> dict[str, float]:
    """Per action with two or more variants: the traffic share Thompson sampling gives to variants
    other than the one with the best posterior mean."""
    out = {}
    for action_id, p in posteriors.items():
        if len(p.variants) < 2:
            continue
        rows = state[state["action_id"] == action_id].set_index("variant_id")
        shares = np.array([rows.loc[v, "traffic_share"] for v in p.variants])
        out[action_id] = bandit.exploration_share(p, shares)
    return out


def versions_kept(con) -> int:
    return con.execute("select count(distinct version) from decisioning.bandit_state_versions").fetchall()[0][0]
