"""The MLflow model registry and the promotion gate for the recommender.

Every trained recommender is registered as a new version of one registered model. The alias
``champion`` marks the version that published recommendations come from. A challenger takes the
alias only if it is **not worse** than the champion on the primary metric (NDCG@10 on the warm
slice, see ml/rec_evaluation.py) **on the same split**: the champion's logged parameters are
refitted on the challenger's training data and evaluated on the same held-out purchases, so both
numbers answer the same question. A tie promotes the challenger (same quality, newer data).
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"
PRIMARY_METRIC = "ndcg_at_10"


@dataclass(frozen=True)
class GateDecision:
    promoted: bool
    challenger_version: str
    challenger_metric: float
    champion_version: str | None  # the champion before the decision
    champion_metric: float | None  # the old champion's configuration on the same split

    @property
    def champion_now(self) -> str:
        return self.challenger_version if self.promoted else str(self.champion_version)

    def summary(self) -> str:
        if self.champion_version is None:
            return f"version {self.challenger_version} is the first champion ({PRIMARY_METRIC} {self.challenger_metric:.4f})"
        verdict = "promoted to champion" if self.promoted else "rejected, champion kept"
        return (
            f"challenger version {self.challenger_version} ({PRIMARY_METRIC} {self.challenger_metric:.4f}) vs "
            f"champion version {self.champion_version} ({self.champion_metric:.4f}) on the same split: {verdict}"
        )


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
    client: MlflowClient,
    name: str,
    challenger_version: str,
    challenger_metric: float,
    champion_version: str | None,
    champion_metric: float | None,
) -> GateDecision:
    """Move the aliases: the challenger becomes champion unless it is worse on the same split."""
    promoted = champion_version is None or challenger_metric >= champion_metric
    client.set_registered_model_alias(name, CHAMPION if promoted else CHALLENGER, challenger_version)
    for key, value in (
        ("gate_primary_metric", PRIMARY_METRIC),
        ("gate_challenger_metric", f"{challenger_metric:.6f}"),
        ("gate_champion_version", str(champion_version)),
        ("gate_champion_metric", "" if champion_metric is None else f"{champion_metric:.6f}"),
        ("gate_decision", "promoted" if promoted else "rejected"),
    ):
        client.set_model_version_tag(name, challenger_version, key, value)
    return GateDecision(promoted, challenger_version, challenger_metric, champion_version, champion_metric)


def champion_params(client: MlflowClient, version) -> dict[str, str]:
    """The logged parameters of the run that produced a model version."""
    return dict(client.get_run(version.run_id).data.params)


def load_champion(tracking_uri: str, name: str):
    """The champion as an MLflow pyfunc model (in any process)."""
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
