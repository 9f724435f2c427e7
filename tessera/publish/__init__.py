"""Publishing: what is published (published.py, its SQL in sql/), how a table is built, validated and
swapped in (outputs.py), snapshots and releases, holdout groups, uplift and the popular-products ranking."""
