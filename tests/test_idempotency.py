"""Re-materializing the graph on unchanged input is idempotent."""

from __future__ import annotations

import duckdb

from tests.conftest import run_job


def test_rematerializing_unchanged_input_changes_nothing(pipeline):
    """A second run on the same landing files publishes the same customer keys, segments and
    recommendations (seeded, single-threaded training)."""
    _, settings = pipeline

    def snapshot():
        con = duckdb.connect(str(settings.duckdb_path), read_only=True)
        try:
            return {
                name: con.execute(f"select * exclude (model_run_id) from publish.{name} order by all").fetchall()
                if name == "customer_recommendations"
                else con.execute(f"select * from publish.{name} order by all").fetchall()
                for name in ("customer_recommendations", "customer_segments", "customer_scores")
            } | {"keys": con.execute("select customer_key, anchor_customer_id from marts.dim_customers order by all").fetchall()}
        finally:
            con.close()

    before = snapshot()
    assert run_job().success
    after = snapshot()
    for name in before:
        assert before[name] == after[name], name
