"""tessera/sql.py: identifiers quoted in one place, values bound, SQL files read beside their module."""

import duckdb

from tessera import sql
from tessera.sql import Params, ident


def test_an_identifier_is_double_quoted_and_a_quote_inside_it_doubled():
    assert ident("raw", "orders") == '"raw"."orders"'
    assert ident('odd"name') == '"odd""name"'
    con = duckdb.connect()
    table = ident('odd"name')
    con.execute(f"create table {table} (x integer)")
    assert con.execute("select table_name from information_schema.tables").fetchall() == [('odd"name',)]


def test_params_bind_each_value_under_its_own_name_with_the_type_asked_for():
    p = Params(kept="as given")
    name, n = p.bind("o'brien.csv"), p.bind(3, "bigint")
    text = f"select {name} as name, {n} as n, $kept as kept"
    assert text == "select $p1 as name, cast($p2 as bigint) as n, $kept as kept"
    row = duckdb.connect().execute(f"select name, typeof(n), kept from ({text})", p).fetchall()
    # a quote in a value is data, never SQL
    assert row == [("o'brien.csv", "BIGINT", "as given")]


def test_a_sql_file_is_read_from_the_sql_folder_beside_its_module():
    import tessera.privacy.erasure as erasure

    text = sql.load(erasure.__file__, "log_completed")
    assert "insert into privacy.erasure_log" in text and "$processed_at" in text
