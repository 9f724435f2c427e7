"""Small shared helpers: the transaction block (tessera/db.py) and Markdown tables (tessera/markdown.py)."""

from __future__ import annotations

import pytest

from tessera.db import transaction
from tessera.markdown import table


def test_a_transaction_commits_its_block_and_rolls_back_and_reraises_on_an_error(con):
    con.execute("create table t (i integer)")
    with transaction(con):
        con.execute("insert into t values (1)")
    with pytest.raises(KeyError, match="boom"), transaction(con):
        con.execute("insert into t values (2)")
        raise KeyError("boom")
    assert con.execute("select i from t").fetchall() == [(1,)]
    # the connection is usable afterwards: no transaction was left open
    with transaction(con):
        con.execute("insert into t values (3)")
    assert con.execute("select i from t order by i").fetchall() == [(1,), (3,)]


def test_a_markdown_table_prints_cells_as_given_and_aligns_number_columns_right():
    text = table(
        [("a.csv", "0.9500", None), ("b.csv", "1,234", "email")],
        ["file", "rows", "personal data"],
        ("left", "right", "left"),
    )
    header, rule, first, second = text.splitlines()
    assert [c.strip() for c in header.strip("|").split("|")] == ["file", "rows", "personal data"]
    assert rule.startswith("|:") and rule.split("|")[2].endswith(":")
    assert "0.9500" in first and first.rstrip().endswith("|") and "email" in second
