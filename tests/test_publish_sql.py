"""The SQL publishing runs itself (tessera/publish/sql): every value it needs is bound, never
formatted in, and the bound forms give the same answers as the inline ones."""

from __future__ import annotations

from types import SimpleNamespace

import duckdb
import pytest

from tessera.publish import holdout, outputs, queries
from tessera.publish.published import PUBLISHED

SETTINGS = SimpleNamespace(holdout_share=0.10, uplift_window_days=14, uplift_confidence=0.95)


def _queries():
    for spec in PUBLISHED:
        yield spec.name, spec.sql
        yield from ((f"{spec.name}:{v.name}", v.sql) for v in spec.validations)
        yield from ((f"{spec.name}:{e.name}", e.sql) for e in spec.exports)
        yield from ((f"{spec.name}:after_swap", sql) for sql in spec.after_swap)


@pytest.mark.parametrize(("name", "sql"), list(_queries()), ids=[n for n, _ in _queries()])
def test_every_parameter_a_published_query_names_is_bound_and_no_placeholder_is_left(name, sql):
    named = set(queries.bind(sql, dict.fromkeys(queries._PARAMETER.findall(sql))))
    assert named <= set(outputs.parameters(SETTINGS)), name
    # {table} is the only placeholder left: the snapshot writer and the validations fill it in
    assert "{" not in sql.replace("{table}", ""), name


def test_the_configured_numbers_never_appear_in_the_sql():
    # Regression: the holdout share and the uplift's window and confidence were formatted into
    # the SQL text; they are bound now, so changing them changes no query
    other = SimpleNamespace(holdout_share=0.25, uplift_window_days=30, uplift_confidence=0.9)
    assert outputs.parameters(other) != outputs.parameters(SETTINGS)
    for name, sql in _queries():
        for value in ("0.1", "1000", "0.95", "1.959963984540054"):
            assert value not in sql, (name, value)


def test_bind_passes_only_the_parameters_a_query_names():
    assert queries.bind("select $a + $b_c, $a", {"a": 1, "b_c": 2, "d": 3}) == {"a": 1, "b_c": 2}
    assert queries.bind("select 1", {"a": 1}) == {}


@pytest.mark.parametrize("share", [0.0, 0.05, 0.10, 0.33333, 0.9999])
def test_the_holdout_macro_with_a_bound_threshold_gives_the_inline_expressions_groups(share):
    con = duckdb.connect()
    holdout.install(con)
    inline = holdout.holdout_group_sql("c", "k", share)
    differ = con.execute(
        f"select count(*) from (select 'C' || range as k, case when range % 7 = 0 then null else 'rfm:' || (range % 5) end as c "
        f"from range(20000)) where {inline} is distinct from holdout_group(c, k, $t)",
        {"t": holdout.threshold(share)},
    ).fetchall()[0][0]
    assert differ == 0


@pytest.mark.parametrize("share", [-0.1, 1.0, 1.5])
def test_a_holdout_share_outside_zero_to_one_is_refused(share):
    with pytest.raises(ValueError, match="holdout share"):
        holdout.threshold(share)
