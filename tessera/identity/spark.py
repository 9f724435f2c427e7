"""The identity matcher on Spark: where the dbt project runs on Spark, the same matcher runs there.

`resolve(spark, records, config)` runs engine.resolve's steps on a SparkSession: the same
standardisation, blocking keys with the same block cap and pair budget, the same Splink 5
comparisons, levels, priors and training sessions (Splink's Spark backend), the same plausibility
check and prior estimate, and the same clustering of the scored pairs on the driver (cluster.py).
The SQL is built by the same functions, in Spark's dialect where it differs (dialects.py).

Damerau-Levenshtein on Spark is a Scala UDF in a jar Splink ships: the session must be started
with it on `spark.jars` (`local_session` does; `similarity_jar()` gives its path for a cluster's
configuration). Jaro-Winkler is not the jar's, which scores differently from DuckDB, but
`tessera_jaro_winkler`, a Python UDF that gives DuckDB's doubles (similarity.py): the executors
need a Python with pyarrow (Spark's Arrow UDFs), not tessera.

What differs from DuckDB:
- no incremental matching: `previous` state (engine.MatcherState) is DuckDB-only, and the result
  has no state (its fingerprints and score reuse are DuckDB SQL, and a Spark run has no warehouse
  tables to keep them in);
- Splink samples the records for u by a hash of their ids, and the hash is the engine's own, so
  the u sample differs (with `u_max_pairs` at or above all pairs of the table there is no sample,
  and the two engines train the same model to 1e-16);
- a birth date written with a year of fewer than four digits is read by DuckDB as that year, and
  by Spark as no date (dialects.iso_date); a value with non-ASCII letters may get another
  Jaro-Winkler score (DuckDB compares bytes).
On fake_1000 and FEBRL1 both engines give the same clusters (bench/identity_spark.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tessera.identity.config import IdentityConfig
from tessera.identity.dialects import SparkRunner, splink_spark_api
from tessera.identity.engine import ResolveResult
from tessera.identity.engine import resolve as _engine_resolve

SOURCE_VIEW = "__id_source"
# Runtime settings the matcher needs, set for the run and put back after it:
# - dates are parsed by the current parser, and one it cannot read is a null, not an error asking
#   which parser to use (the default EXCEPTION policy raises on dates the legacy parser read)
_RUN_CONF = {"spark.sql.legacy.timeParserPolicy": "CORRECTED"}


def similarity_jar() -> str:
    """The path of Splink's jar of similarity UDFs (jaro_winkler, damerau_levenshtein, ...) for
    the installed Spark's major version."""
    from splink.backends.spark import similarity_jar_location

    return similarity_jar_location()


def local_session(work_dir: Path | None = None, partitions: int = 4, cores: int = 2):
    """A local SparkSession for the matcher: Splink's jar on the class path, few shuffle partitions
    (the default 200 make every small join slow), no UI, UTC. As bench/spark_portability.py
    starts one, with the warehouse in `work_dir` when given."""
    from pyspark.sql import SparkSession

    # the Python workers (tessera_jaro_winkler) run this interpreter, not the first python3 on PATH
    # (an in-process SparkContext reads the variable, not spark.pyspark.python)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("tessera-identity")
        .config("spark.jars", similarity_jar())
        .config("spark.sql.shuffle.partitions", str(partitions))
        .config("spark.default.parallelism", str(partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
    )
    if work_dir is not None:
        builder = builder.config("spark.sql.warehouse.dir", str(Path(work_dir) / "warehouse")).config(
            "spark.local.dir", str(Path(work_dir) / "tmp")
        )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _check_udfs(spark) -> None:
    if not any(f.name == "damerau_levenshtein" for f in spark.catalog.listFunctions()):
        raise RuntimeError(
            "Splink's damerau_levenshtein is not registered on this SparkSession: start it with "
            f"spark.jars={similarity_jar()} (tessera.identity.spark.local_session does)"
        )


def resolve(spark, records, config: IdentityConfig, identifiers: str | None = None) -> ResolveResult:
    """Resolve the person records in `records` (a Spark DataFrame, or the name of a table or view
    in the session) into clusters, as engine.resolve does on DuckDB; `identifiers`, optional, a
    table or view of declared identifiers (record_id, id_type, id_value). Every working view the
    run makes is dropped at its end."""
    db = SparkRunner(spark)
    saved = {k: spark.conf.get(k, None) for k in _RUN_CONF}
    for k, v in _RUN_CONF.items():
        spark.conf.set(k, v)
    try:
        # registers Splink's UDFs from the jar (a session without it fails in _check_udfs, saying so)
        splink_spark_api(spark)
        _check_udfs(spark)
        if isinstance(records, str):
            source = records
        else:
            records.createOrReplaceTempView(SOURCE_VIEW)
            source = SOURCE_VIEW
        return _engine_resolve(db, source, config, identifiers)
    finally:
        db.close()
        if not isinstance(records, str):
            spark.catalog.dropTempView(SOURCE_VIEW)
        for k, v in saved.items():
            if v is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, v)
