"""The ML stage's warehouse I/O (tessera/mlio): its SQL files, the column lists they share with
the model code, and the blocking check's counts of broken list rules."""

from __future__ import annotations

from importlib.resources import files

import duckdb
import pytest

from ml.clustering import BEHAVIOURAL_FEATURES
from tessera.mlio.recommender import candidate_rule_violations
from tessera.mlio.scores import read_behavioural_features

# what reads no customer, or reads customers through another file's filtered codes
NOT_CUSTOMER_READS = {
    "items.sql",
    "interactions.sql",
    "candidate_rule_violations.sql",
    "product_catalogue.sql",
    "product_list_violations.sql",
}


@pytest.mark.parametrize("name", sorted(p.name for p in files("tessera.mlio").joinpath("sql").iterdir()))
def test_every_read_of_customers_leaves_out_those_who_asked_for_erasure(name):
    text = files("tessera.mlio").joinpath("sql", name).read_text()
    assert name in NOT_CUSTOMER_READS or "is_erasure_requested" in text


def _warehouse(columns: list[str]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute(
        "create table marts.dim_customers as select * from (values "
        "('c1', false), ('c2', true), ('c3', false)) t(customer_key, is_erasure_requested)"
    )
    values = ", ".join(f"1.0 as {c}" for c in columns)
    con.execute(f"create table marts.customer_features as select customer_key, {values} from marts.dim_customers")
    return con


def test_behavioural_features_are_the_clustering_columns_without_erased_customers():
    frame = read_behavioural_features(_warehouse([*BEHAVIOURAL_FEATURES, "extra"]))
    assert list(frame.columns) == ["customer_key", *BEHAVIOURAL_FEATURES]
    assert frame["customer_key"].to_list() == ["c1", "c3"]


def test_a_feature_the_model_code_adds_but_the_sql_file_does_not_read_is_an_error(monkeypatch):
    # the SQL file names its columns itself: a feature added to the model code alone must not
    # quietly train without it
    from tessera.mlio import scores

    monkeypatch.setattr(scores, "BEHAVIOURAL_FEATURES", [*BEHAVIOURAL_FEATURES, "returns"])
    with pytest.raises(ValueError, match="the model expects"):
        scores.read_behavioural_features(_warehouse([*BEHAVIOURAL_FEATURES, "returns"]))


def test_the_candidate_check_counts_each_broken_rule():
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute("create schema ml")
    con.execute(
        "create table marts.dim_customers as select * from (values "
        "('c1', true), ('c2', false)) t(customer_key, personalization_consent)"
    )
    con.execute(
        "create table marts.dim_products as select * from (values "
        "('p1', 'toys', true), ('p2', 'toys', true), ('p3', 'books', false)) t(product_id, category, is_active)"
    )
    con.execute(
        "create table ml.recommendation_candidates as select * from (values "
        "('c1', 1, 'p1', 'personalised', 2, 1), "  # c1: two toys, cap 1
        "('c1', 2, 'p2', 'personalised', 2, 1), "
        "('c2', 1, 'p3', 'personalised', 1, 3), "  # no consent, inactive product
        "('c2', 2, 'p1', 'popularity', 1, 3), "  # rank past top_n, and one row too many
        "('c9', 1, 'p1', 'popularity', 1, 3)"  # not a customer
        ") t(customer_key, rank, product_id, source, top_n, max_per_category)"
    )
    assert candidate_rule_violations(con) == {
        "unknown_customers": 1,
        "inactive_or_unknown_products": 1,
        "ranks_out_of_range": 1,
        "personalised_without_consent": 1,
        "customers_over_top_n": 1,
        "customer_categories_over_cap": 1,
    }
    con.execute("delete from ml.recommendation_candidates where customer_key <> 'c1' or rank = 2")
    assert set(candidate_rule_violations(con).values()) == {0}
