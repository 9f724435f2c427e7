"""The two SQL engines the matcher runs on: DuckDB (the warehouse) and Spark (the same dbt project
on dbt-spark), and the few places their SQL differs.

The SQL builders in engine.py, blocking.py and model.py take a dialect and call the helpers here
where the engines differ (identifier quotes, parameter markers, regular-expression calls, integer
division, accents, dates); their DuckDB SQL is what it was before Spark was added (but for the
whitespace of two statements). A runner runs that SQL: `DuckDBRunner` on a DuckDB connection (temp tables), `SparkRunner` on a
SparkSession (temp views over locally checkpointed DataFrames).
"""

from __future__ import annotations

import unicodedata
from functools import cache

import duckdb
import pandas as pd
import polars as pl
import polars.selectors as cs

DUCKDB = "duckdb"
SPARK = "spark"


def quote(name: str, dialect: str = DUCKDB) -> str:
    """A quoted identifier: "name" on DuckDB, `name` on Spark (where "name" is a string)."""
    if dialect == SPARK:
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def param(name: str, dialect: str = DUCKDB) -> str:
    """A named parameter marker: $name on DuckDB, :name on Spark (values bound as a dict)."""
    return f":{name}" if dialect == SPARK else f"${name}"


def string_type(dialect: str = DUCKDB) -> str:
    return "string" if dialect == SPARK else "varchar"


def _literal_pattern(pattern: str, dialect: str) -> str:
    # Spark string literals read backslash escapes: a regex's \s is written \\s
    return pattern.replace("\\", "\\\\") if dialect == SPARK else pattern


def replace_all(expr: str, pattern: str, replacement: str, dialect: str = DUCKDB) -> str:
    """Every match of `pattern` (a regex, as the regex engine reads it) in `expr` replaced."""
    if dialect == SPARK:
        return f"regexp_replace({expr}, '{_literal_pattern(pattern, dialect)}', '{replacement}')"
    return f"regexp_replace({expr}, '{pattern}', '{replacement}', 'g')"


def matches(expr: str, pattern: str, dialect: str = DUCKDB) -> str:
    """True when `pattern` (anchor it for a full match) is found in `expr`."""
    if dialect == SPARK:
        return f"regexp_like({expr}, '{_literal_pattern(pattern, dialect)}')"
    return f"regexp_matches({expr}, '{pattern}')"


def int_div(a: str, b: str, dialect: str = DUCKDB) -> str:
    return f"{a} div {b}" if dialect == SPARK else f"{a} // {b}"


def anti_join(dialect: str = DUCKDB) -> str:
    return "left anti join" if dialect == SPARK else "anti join"


@cache
def _accent_map() -> tuple[str, str]:
    """Latin letters with diacritics (Latin-1, Extended-A and B, Extended Additional) and their
    base letters: what DuckDB's strip_accents does to them (checked letter by letter). Letters of
    other scripts are left as they are; every standardiser that strips accents then drops any
    letter outside a-z, so the keys are the same on both engines."""
    src, dst = [], []
    for cp in [*range(0xC0, 0x250), *range(0x1E00, 0x1F00)]:
        ch = chr(cp)
        base = "".join(c for c in unicodedata.normalize("NFD", ch) if not unicodedata.combining(c))
        if base != ch and len(base) == 1:
            src.append(ch)
            dst.append(base)
    return "".join(src), "".join(dst)


def strip_accents(expr: str, dialect: str = DUCKDB) -> str:
    if dialect == SPARK:
        src, dst = _accent_map()
        return f"translate({expr}, '{src}', '{dst}')"
    return f"strip_accents({expr})"


def iso_date(expr: str, dialect: str = DUCKDB) -> str:
    """`expr` read as an ISO date, yyyymmdd or dd/mm/yyyy, written yyyy-mm-dd (null otherwise).

    Spark's cast is looser than DuckDB's ('1987' and '1987-04' are dates to it) and its patterns
    stricter ('dd' wants two digits), so on Spark the cast is guarded to DuckDB's ISO forms
    (four-digit year, '-' or '/', one or two digits for month and day, an optional time after).
    One difference is left: DuckDB reads a year of fewer than four digits as it is ('87-04-12' is
    the year 87), Spark reads no date."""
    if dialect == SPARK:
        iso = _literal_pattern(r"^[0-9]{4}([-/])[0-9]{1,2}\1[0-9]{1,2}([ T]|$)", SPARK)
        return (
            f"date_format(coalesce(try_cast(case when regexp_like(trim({expr}), '{iso}') "
            f"then replace(trim({expr}), '/', '-') end as date), try_to_date(trim({expr}), 'yyyyMMdd'), "
            f"try_to_date(trim({expr}), 'd/M/yyyy')), 'yyyy-MM-dd')"
        )
    return (
        f"strftime(coalesce(try_cast(trim({expr}) as date), try_strptime(trim({expr}), '%Y%m%d')::date, "
        f"try_strptime(trim({expr}), '%d/%m/%Y')::date), '%Y-%m-%d')"
    )


def reformat_iso_date(expr: str, dialect: str = DUCKDB) -> str:
    """A yyyy-mm-dd string written yyyy-dd-mm (day and month swapped)."""
    if dialect == SPARK:
        return f"date_format(try_cast({expr} as date), 'yyyy-dd-MM')"
    return f"strftime(try_cast({expr} as date), '%Y-%d-%m')"


# Jaro-Winkler on Spark: a Python function that scores as DuckDB does (similarity.py), instead of
# Splink's jar, which scores differently.
JARO_WINKLER_SPARK = "tessera_jaro_winkler"


def register_spark_functions(spark) -> None:
    """Register the session's functions the matcher uses (tessera_jaro_winkler). The function is
    shipped to the Python workers by value, so they need no tessera install."""
    from pyspark import cloudpickle
    from pyspark.sql.functions import udf
    from pyspark.sql.types import DoubleType

    from tessera.identity import similarity

    cloudpickle.register_pickle_by_value(similarity)
    spark.udf.register(JARO_WINKLER_SPARK, udf(similarity.jaro_winkler, DoubleType(), useArrow=True))


class DuckDBRunner:
    """SQL on a DuckDB connection; working tables are temp tables."""

    dialect = DUCKDB

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con

    def create(self, table: str, select: str, params=None) -> None:
        self.con.execute(f"create or replace temp table {table} as {select}", params)

    def append(self, table: str, select: str) -> None:
        self.con.execute(f"insert into {table} {select}")

    def rows(self, sql: str, params=None) -> list[tuple]:
        return self.con.execute(sql, params).fetchall()

    def frame(self, sql: str) -> pl.DataFrame:
        return self.con.sql(sql).pl()

    def pandas(self, sql: str, params=None) -> pd.DataFrame:
        return self.con.execute(sql, params).df()

    def columns(self, table: str) -> list[str]:
        return [r[0] for r in self.con.execute(f"select * from {table} limit 0").description]

    def register(self, name: str, frame) -> None:
        self.con.register(name, frame)

    def unregister(self, name: str) -> None:
        self.con.unregister(name)

    def drop(self, table: str) -> None:
        self.con.execute(f"drop table {table}")

    def splink_api(self):
        from splink import DuckDBAPI

        return DuckDBAPI(connection=self.con)

    def drop_splink_tables(self) -> None:
        """Splink materialises its working tables (records, pairs, term frequencies) in the
        connection's database: on the warehouse they would outlive the run, and hold personal data
        an erasure would not reach."""
        for schema, table, kind in self.con.execute(
            "select schema_name, table_name, 'table' from duckdb_tables() where table_name like '__splink__%' "
            "union all select schema_name, view_name, 'view' from duckdb_views() where view_name like '__splink__%'"
        ).fetchall():
            self.con.execute(f"drop {kind} if exists {quote(schema)}.{quote(table)}")


class SparkRunner:
    """SQL on a SparkSession; a working table is a temp view over a locally checkpointed
    DataFrame (materialised once, its lineage cut, so the next step does not recompute it)."""

    dialect = SPARK

    def __init__(self, spark):
        self.spark = spark
        self._tables: dict[str, object] = {}
        register_spark_functions(spark)

    def _keep(self, table: str, df) -> None:
        df = df.localCheckpoint(eager=True)
        df.createOrReplaceTempView(table)
        old = self._tables.pop(table, None)
        if old is not None:
            old.unpersist()
        self._tables[table] = df

    def create(self, table: str, select: str, params=None) -> None:
        self._keep(table, self.spark.sql(select, args=params))

    def append(self, table: str, select: str) -> None:
        self._keep(table, self.spark.table(table).unionByName(self.spark.sql(select)))

    def rows(self, sql: str, params=None) -> list[tuple]:
        return [tuple(r) for r in self.spark.sql(sql, args=params).collect()]

    def frame(self, sql: str) -> pl.DataFrame:
        """The rows of `sql`, in no particular order (sort them where order matters)."""
        return pl.from_arrow(self.spark.sql(sql).toArrow())

    def pandas(self, sql: str, params=None) -> pd.DataFrame:
        return self.spark.sql(sql, args=params).toPandas()

    def columns(self, table: str) -> list[str]:
        return self.spark.table(table).columns

    def register(self, name: str, frame) -> None:
        if isinstance(frame, pd.DataFrame):
            frame = pl.from_pandas(frame)
        # Spark has no unsigned integers (polars counts are UInt32); an empty pandas column of
        # objects (no deterministic links) arrives untyped: its ids are strings
        frame = frame.with_columns(cs.unsigned_integer().cast(pl.Int64), cs.by_dtype(pl.Null).cast(pl.String))
        self._keep(name, self.spark.createDataFrame(frame.to_arrow()))

    def unregister(self, name: str) -> None:
        self.drop(name)

    def drop(self, table: str) -> None:
        self.spark.catalog.dropTempView(table)
        old = self._tables.pop(table, None)
        if old is not None:
            old.unpersist()

    def splink_api(self):
        # persist, not Splink's default parquet checkpoints: no checkpoint directory to set up
        return splink_spark_api(self.spark)

    def drop_splink_tables(self) -> None:
        """Splink's working views and their cached data: the session outlives the run, and they
        hold personal data."""
        for t in self.spark.catalog.listTables():
            if t.isTemporary and t.name.startswith("__splink__"):
                if self.spark.catalog.isCached(t.name):
                    self.spark.catalog.uncacheTable(t.name)
                self.spark.catalog.dropTempView(t.name)

    def close(self) -> None:
        """Drop every working view this runner made."""
        for table in list(self._tables):
            self.drop(table)


def splink_spark_api(spark):
    """Splink's SparkAPI, writing its SQL in sqlglot's own Spark dialect. Splink 5.0.0 writes it
    with a Spark dialect it subclasses, and with the compiled sqlglot (sqlglotc) that fails on the
    first statement ("interpreted classes cannot inherit from compiled"); the subclass only writes
    double literals as 0.5D instead of CAST(0.5 AS DOUBLE), the same value."""
    import sqlglot
    from splink import SparkAPI

    class _SparkAPI(SparkAPI):
        def _setup_for_execute_sql(self, sql: str, physical_name: str) -> str:
            return sqlglot.transpile(sql, read="spark", write="spark", pretty=True)[0]

    return _SparkAPI(spark_session=spark, break_lineage_method="persist")


def runner(con) -> DuckDBRunner | SparkRunner:
    """A runner for `con`: a DuckDB connection, or a runner already."""
    if isinstance(con, DuckDBRunner | SparkRunner):
        return con
    if isinstance(con, duckdb.DuckDBPyConnection):
        return DuckDBRunner(con)
    raise TypeError(f"expected a DuckDB connection or a runner, got {type(con).__name__}")
