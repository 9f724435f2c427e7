"""One source for every model default: the CLI, the Dagster config and the library agree. (The
recommender's dataclass once defaulted to 32 components, feature weight 1.0 and no decay while
the asset and the CLI ran the tuned 64, 0.03 and 30 days: a notebook user got an untuned model.)"""

from __future__ import annotations

import argparse
import inspect
from dataclasses import fields

import pytest

from ml.clustering import FIT_SAMPLE, K_MAX, K_MIN, cluster_customers
from ml.propensity import MAX_TRAIN_ROWS, train_propensity
from ml.rec_lists import ListRules
from ml.recommender import RecommenderParams
from orchestration.ml import ClusteringConfig, PropensityConfig, RecommenderConfig
from tessera.cli import add_recommend_parser, recommender_params


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_recommend_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["recommend", *argv])


def test_the_dataclass_defaults_are_the_tuned_recommender():
    params = RecommenderParams()
    assert (params.no_components, params.feature_weight, params.half_life_days) == (64, 0.03, 30.0)


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "--interactions", "i.csv", "--holdout-days", "21"],
        ["tune", "--interactions", "i.csv", "--holdout-days", "21"],
    ],
)
def test_the_cli_without_options_runs_the_dataclass_defaults(argv):
    assert recommender_params(_parse(*argv)) == RecommenderParams()


def test_a_cli_option_changes_only_its_own_field():
    args = _parse(
        "evaluate", "--interactions", "i.csv", "--test", "t.csv", "--components", "8", "--feature-weight", "1"
    )
    assert recommender_params(args) == RecommenderParams(no_components=8, feature_weight=1.0)


def test_the_dagster_config_runs_the_dataclass_defaults():
    config = RecommenderConfig()
    assert config.params(seed=RecommenderParams.seed) == RecommenderParams()
    assert config.rules() == ListRules()
    assert ListRules().k == RecommenderParams().k
    # every config field that is a parameter has the parameter's default
    names = {f.name for f in fields(RecommenderParams)}
    for name, value in config.model_dump().items():
        if name in names:
            assert value == getattr(RecommenderParams(), name), name


def test_the_propensity_and_clustering_configs_default_to_the_library():
    assert PropensityConfig().max_train_rows == MAX_TRAIN_ROWS
    assert inspect.signature(train_propensity).parameters["max_train_rows"].default == MAX_TRAIN_ROWS
    config = ClusteringConfig()
    assert (config.k_min, config.k_max, config.fit_sample) == (K_MIN, K_MAX, FIT_SAMPLE)
    defaults = inspect.signature(cluster_customers).parameters
    assert defaults["k_range"].default == range(K_MIN, K_MAX + 1)
    assert defaults["fit_sample"].default == FIT_SAMPLE
