"""What each decisioning step does on the warehouse: the bandit's state (each version an MLflow
run, experiment tessera-bandit), the day's decisions and the rendered messages (docs/decisioning.md)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd

from ml.tracking import ensure_experiment
from tessera.decisioning import decide, report
from tessera.decisioning import state as bandit_state
from tessera.decisioning.catalogue import Catalogue
from tessera.decisioning.mailing import mailing_for
from tessera.decisioning.render import INDEX, Rendered, render_messages
from tessera.privacy import pseudonym
from tessera.realtime.outbox import load_sends as load_realtime_sends
from tessera.settings import Settings, mlflow_artifact_root

BANDIT_EXPERIMENT = "tessera-bandit"


def log_bandit_run(settings: Settings, version: int, state: pd.DataFrame, exploration: dict[str, float], params: dict,
                   tags: dict) -> str:  # fmt: skip
    experiment_id = ensure_experiment(settings.mlflow_tracking_uri, BANDIT_EXPERIMENT, mlflow_artifact_root(settings))
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"bandit_state_v{version}", tags=tags) as run:
        mlflow.log_params(params)
        for row in state.itertuples():
            prefix = f"{row.action_id}.{row.variant_id}"
            mlflow.log_metric(f"posterior_mean.{prefix}", row.posterior_mean)
            mlflow.log_metric(f"traffic_share.{prefix}", row.traffic_share)
            mlflow.log_metric(f"trials.{prefix}", row.trials)
            mlflow.log_metric(f"conversions.{prefix}", row.conversions)
        for action_id, share in exploration.items():
            mlflow.log_metric(f"exploration_share.{action_id}", share)
        mlflow.log_dict({"version": version, "state": json.loads(state.to_json(orient="records"))}, "bandit_state.json")
        return run.info.run_id


@dataclass
class StateRefresh:
    version: int
    is_new: bool
    state: pd.DataFrame
    exploration: dict[str, float]
    mlflow_run_id: str
    versions_kept: int


def refresh_state(con, catalogue: Catalogue, settings: Settings, tags: dict) -> StateRefresh:
    """Recompute the bandit's state (a new version only when the counts change) and log a version
    that has no MLflow run yet."""
    version, is_new, state, posteriors = bandit_state.update_state(con, catalogue, settings.seed)
    exploration = bandit_state.exploration(posteriors, state)
    run_id = state["mlflow_run_id"].iloc[0] if len(state) else None
    if is_new or not isinstance(run_id, str):
        params = {
            "version": version,
            "attribution_window_days": catalogue.attribution_days,
            "prior": "Beta(1, 1)",
            "catalogue": str(catalogue.path.name),
            "seed": settings.seed,
        }
        run_id = log_bandit_run(settings, version, state, exploration, params, tags)
        bandit_state.record_run(con, version, run_id)
    return StateRefresh(version, is_new, state, exploration, run_id, bandit_state.versions_kept(con))


class NoBanditState(RuntimeError):
    """Decisions draw variants from the bandit's state: none was computed yet."""


@dataclass
class DecisionRun:
    state_version: int
    variants_sent: dict[str, dict[str, int]]  # per action: messages per variant
    exploration_realised: dict[str, float]  # per action with variants: the share not given the best one
    summary: list[tuple[str, str, int]]  # action, decision, customers
    unreachable: list[tuple[str, str, int, int]]  # channel, why, customers, of whom an action was eligible


def make_decisions(con, catalogue: Catalogue, settings: Settings) -> DecisionRun:
    """decisioning.decisions from the latest bandit state (decide.decide), with what the run did."""
    pseudonym.install(con, settings.pseudonym_salt)
    con.execute("create schema if not exists decisioning")
    con.execute(bandit_state.VERSIONS_DDL)
    version, state = bandit_state.current_version(con)
    if version == 0:
        raise NoBanditState("no bandit state yet: materialize decisioning/bandit_state first")
    posteriors = bandit_state.posteriors_from(state, catalogue)
    # the realtime trigger worker's sends count against the frequency caps too
    load_realtime_sends(con, settings.publish_dir)
    shares = decide.decide(con, catalogue, posteriors, version, settings.seed, settings.holdout_share)
    realised = {}
    for action_id, counts in shares.items():
        sent = sum(counts.values())
        if sent and len(counts) > 1:
            best = posteriors[action_id].variants[int(posteriors[action_id].mean.argmax())]
            realised[action_id] = round(1 - counts[best] / sent, 4)
    summary = con.execute(
        "select action_id, decision, count(*) from decisioning.decisions group by all order by all"
    ).fetchall()
    unreachable = con.execute(
        "select channel, reason, customers, customers_with_an_eligible_action from decisioning.unreachable order by channel"
    ).fetchall()
    return DecisionRun(version, shares, realised, summary, unreachable)


def render_day(con, catalogue: Catalogue, settings: Settings) -> tuple[Rendered, Path, report.Written]:
    """Render the messages of the latest decision day; its previews (rewritten, not added to) go to
    <data>/decisioning/previews/<day>, the day's campaign report to <data>/reports/campaigns
    (tessera/decisioning/report.py). Returns what was rendered, the preview folder and the report."""
    day = con.execute("select max(decided_on) from decisioning.decisions").fetchall()[0][0]
    preview_dir = settings.data_dir / "decisioning" / "previews" / str(day)
    if preview_dir.exists():
        shutil.rmtree(preview_dir)
    mailing = mailing_for(settings.pseudonym_salt)
    rendered = render_messages(con, catalogue, preview_dir, workers=settings.render_workers, mailing=mailing)
    written = report.write_report(con, catalogue, mailing, settings.data_dir, preview_dir / INDEX)
    return rendered, preview_dir, written
