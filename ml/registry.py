"""The MLflow model registry and the promotion gate's bookkeeping for the recommender.

Every trained recommender is registered as a new version of one registered model. The alias
``champion`` marks the version that published recommendations come from. Whether a new version
takes it is decided in ml/promotion.py (a seeded paired bootstrap of per-user NDCG@10 on the warm
slice, on the same users of the same split, and a minimum number of users): a tie, an identical
retrain or a win within noise keeps the champion. A version that is not promoted gets the
``challenger`` alias. The decision, its reason, the users evaluated and the interval are written
as tags on the model version and as tags, params and metrics on its MLflow run.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ml.promotion import Verdict

CHAMPION = "champion"
CHALLENGER = "challenger"
PRIMARY_METRIC = "ndcg_at_10"


@dataclass(frozen=True)
class GateDecision:
    promoted: bool
    challenger_version: str
    champion_version: str | None  # the champion before the decision
    verdict: Verdict
    # where the published lists come from: "challenger", "champion" or "baseline:<name>"
    lists_from: str

    @property
    def champion_now(self) -> str | None:
        return self.challenger_version if self.promoted else self.champion_version

    def summary(self) -> str:
        return f"challenger version {self.challenger_version} vs {self.verdict.opponent}: {self.verdict.reason}"

    def record(self) -> dict[str, str]:
        """What the gate decided, as text (model version tags, run tags, asset metadata)."""
        interval = self.verdict.interval
        out = {
            "gate_primary_metric": f"{PRIMARY_METRIC} (warm slice)",
            "gate_decision": "promoted"
            if self.promoted
            else "kept_champion"
            if self.champion_version
            else "baseline_published",
            "gate_reason": self.verdict.reason,
            "gate_opponent": self.verdict.opponent,
            "gate_champion_version": str(self.champion_version),
            "gate_users": str(self.verdict.users),
            "gate_min_users": str(self.verdict.min_users),
            "gate_lists_from": self.lists_from,
        }
        if interval is not None:
            out |= {
                "gate_challenger_metric": f"{interval.challenger_mean:.6f}",
                "gate_opponent_metric": f"{interval.opponent_mean:.6f}",
                "gate_difference": f"{interval.mean_difference:.6f}",
                "gate_interval": f"[{interval.low:.6f}, {interval.high:.6f}]",
                "gate_confidence": f"{interval.confidence}",
            }
        return out


def champion(client: MlflowClient, name: str):
    """The current champion ModelVersion, or None."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def register(client: MlflowClient, name: str, model_uri: str, run_id: str) -> str:
    """Register the run's model as a new version; returns the version number."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="tessera LightFM hybrid recommender")
    version = client.create_model_version(name=name, source=model_uri, run_id=run_id)
    return str(version.version)


def decide(
    client: MlflowClient, name: str, challenger_version: str, champion_version: str | None, verdict: Verdict
) -> GateDecision:
    """Move the aliases as the verdict says and record it on the model version: the challenger
    takes `champion` only if promoted; otherwise it is the `challenger` and the lists come from the
    champion, or, with no champion yet, from the baseline the verdict names."""
    promoted = verdict.promote
    client.set_registered_model_alias(name, CHAMPION if promoted else CHALLENGER, challenger_version)
    if promoted:
        lists_from = "challenger"
    elif champion_version is not None:
        lists_from = "champion"
    else:
        lists_from = "baseline:" + verdict.opponent.removeprefix("baseline ")
    decision = GateDecision(promoted, challenger_version, champion_version, verdict, lists_from)
    for key, value in decision.record().items():
        client.set_model_version_tag(name, challenger_version, key, value)
    return decision


def record_on_run(client: MlflowClient, run_id: str, decision: GateDecision, resamples: int, seed: int) -> None:
    """The decision on the challenger's MLflow run: tags (decision, reason, opponent), params (the
    rule) and metrics (users evaluated, the interval), so the run says why it was (not) promoted."""
    for key, value in decision.record().items():
        client.set_tag(run_id, key, value)
    client.log_param(run_id, "gate_min_users", decision.verdict.min_users)
    client.log_param(run_id, "gate_resamples", resamples)
    client.log_param(run_id, "gate_seed", seed)
    client.log_metric(run_id, "gate_users", decision.verdict.users)
    interval = decision.verdict.interval
    if interval is not None:
        client.log_param(run_id, "gate_confidence", interval.confidence)
        client.log_metric(run_id, "gate_difference", interval.mean_difference)
        client.log_metric(run_id, "gate_difference_low", interval.low)
        client.log_metric(run_id, "gate_difference_high", interval.high)


def champion_params(client: MlflowClient, version) -> dict[str, str]:
    """The logged parameters of the run that produced a model version."""
    return dict(client.get_run(version.run_id).data.params)
