"""Quality gates: blocking Great Expectations checks on every raw source and on the key marts.

A failing gate is an ERROR-severity check with blocking=True, so Dagster skips every asset
downstream of the checked asset in the same run: after a raw gate, the dbt models, the recommender
and the published outputs; after a marts gate, the models and the published outputs. The published
outputs run their own suites on the candidate table before it is swapped in (orchestration/publish.py).

Each gate validates with the suite parameters of tessera/quality/suites.py: the row-count bounds come
from the last run in which this same gate passed on this warehouse (quality.gate_history), so a
table that suddenly halves or doubles stops the run; TESSERA_GX_MAX_ROW_COUNT_CHANGE sets how much change is
normal. A raw gate also compares the delivery with that last pass (tessera/quality/delivery.py): it fails
when a new or changed file lacks a column the source sent before, or when the empty share of a key
attribute jumps, naming the file and the column. Every validation is rendered as Great
Expectations Data Docs under TESSERA_GX_DOCS_DIR, linked from the check's metadata. Neither the
check's metadata nor Data Docs hold a value of a personal column (docs/privacy.md).
"""

from collections.abc import Iterable, Iterator

import dagster as dg

from orchestration.dbt import GATED_MARTS, dbt_manifest, model_key
from orchestration.keys import ERASURE_KEY
from orchestration.metadata import capped
from orchestration.resources import DUCKDB_POOL, TesseraResource
from orchestration.sources import source_asset_key
from tessera.landing.contract import SOURCES
from tessera.quality.delivery import COLUMN_DROPPED, SHARE_JUMPED
from tessera.quality.gate import explain_failure, run_gate
from tessera.quality.suites import SuiteResult, suite_spec
from tessera.settings import EXPECTATIONS_DIR, Settings

# the delivery checks whose findings the check's description spells out
DELIVERY_CHECKS = (COLUMN_DROPPED, SHARE_JUMPED)
# a check's description goes into the event log too: it is cut there
DESCRIPTION_MAX_CHARS = 4_000


def gated_marts_upstream(models: Iterable[str]) -> list[dg.AssetKey]:
    """The gated marts among the given dbt models and their dbt ancestors.

    A blocking check holds back the assets that depend on its asset directly. A Python asset
    reading customer_features depends on dim_customers only through dbt models built in the same
    dbt step, which has already run when the check fails; so Python assets also name the gated
    marts they descend from, and a failing marts gate holds them back too."""
    parents = dbt_manifest()["parent_map"]
    todo = [f"model.tessera.{m}" for m in models]
    seen: set[str] = set()
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        todo.extend(p for p in parents.get(node, []) if p.startswith("model."))
    return [model_key(m) for m in GATED_MARTS if f"model.tessera.{m}" in seen]


def run_suite(
    con, settings: Settings, gate: str, table: str, suite_name: str, run_id: str, record: bool = True
) -> SuiteResult:
    """run_gate (tessera/quality/gate.py) with expectations/<suite_name>.json."""
    return run_gate(con, settings, gate, table, EXPECTATIONS_DIR / f"{suite_name}.json", run_id, record)


def gate_description(result: SuiteResult) -> str:
    """The check's one-line verdict, and for a failed delivery check what it saw: the file and the
    column (tessera/quality/delivery.py)."""
    seen = [f["observed"] for f in result.failed if f["expectation"] in DELIVERY_CHECKS]
    text = "; ".join([result.describe(), *seen])
    return text if len(text) <= DESCRIPTION_MAX_CHARS else text[: DESCRIPTION_MAX_CHARS - 1] + "…"


def suite_metadata(result: SuiteResult) -> dict:
    """The check's metadata: counts, the expectations' results and the Data Docs page. The results
    carry no value of a personal column (tessera/quality/suites.py redacts them before anything else
    sees them), samples of other columns are short, and every entry is capped."""
    metadata = {
        "suite": f"{result.suite}.json",
        "batch": result.batch,
        "rows_validated": result.rows_validated,
        "rows_in_table": result.rows_in_table,
        "sampled": result.sampled,
        "expectations_evaluated": result.evaluated,
        "expectations_failed": len(result.failed),
        "row_count_bounds_vs_last_run": dg.MetadataValue.json(
            [result.parameters.get("min_rows_vs_last_run"), result.parameters.get("max_rows_vs_last_run")]
        ),
        "failed_expectations": dg.MetadataValue.json(result.failed),
        "expectations": dg.MetadataValue.md(expectations_table(result.results)),
        "results": dg.MetadataValue.json(result.results),
    }
    if result.rows_from_new_files is not None:
        metadata["rows_from_new_files"] = result.rows_from_new_files
    if result.docs_page is not None:
        metadata["data_docs"] = dg.MetadataValue.path(str(result.docs_page))
        metadata["data_docs_index"] = dg.MetadataValue.path(str(result.docs_index))
    return capped(metadata)


def expectations_table(results: list[dict]) -> str:
    """Great Expectations' results as a table the check's page shows: failures first."""

    def cell(value) -> str:
        text = "" if value is None else str(value)
        text = text if len(text) <= 80 else text[:77] + "..."
        return text.replace("|", "\\|").replace("\n", " ")

    rows = sorted(results, key=lambda r: r["success"])
    lines = [
        "| result | expectation | column | observed | unexpected % | unexpected sample |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        share = r.get("unexpected_percent")
        lines.append(
            f"| {'pass' if r['success'] else '**FAIL**'} | {r['expectation']} | {cell(r['column'])} | {cell(r['observed'])} | "
            f"{'' if share is None else f'{share:.2f}'} | {cell(', '.join(r.get('unexpected_sample') or []))} |"
        )
    return "\n".join(lines)


def blocked(gate: str, table: str, result: SuiteResult) -> dg.Failure:
    """The failure a gate raises when it stops the run: its message names the gate, each failed
    expectation, the rows that failed it and their landing files (tessera/quality/gate.py); a rerun
    would fail the same way on the same data, so it is not retried."""
    return dg.Failure(
        description=explain_failure(gate, table, result),
        metadata={"gate": gate, "table": table, "expectations_failed": len(result.failed)},
        allow_retries=False,
    )


def _asset_of(table: str) -> dg.AssetKey:
    """raw.<source> is a source asset; any other schema.<name> a dbt model."""
    schema, name = table.split(".")
    return dg.AssetKey(["raw", name]) if schema == "raw" else model_key(name)


def build_gx_check(asset_key: dg.AssetKey, suite_name: str, name: str) -> dg.AssetChecksDefinition:
    meta = suite_spec(EXPECTATIONS_DIR / f"{suite_name}.json")["meta"]
    table = meta["table"]
    # the tables its referential-integrity expectations read, as assets
    referenced = [_asset_of(r["table"]) for r in meta.get("references", [])]

    @dg.asset_check(
        asset=asset_key,
        name=name,
        blocking=True,
        additional_deps=[k for k in referenced if k != asset_key],
        pool=DUCKDB_POOL,  # it reads the DuckDB file: never beside another run's writer
        description=f"Great Expectations suite expectations/{suite_name}.json on {table}.",
    )
    def _gate(context: dg.AssetCheckExecutionContext, tessera: TesseraResource) -> Iterator[dg.AssetCheckResult]:
        settings = tessera.settings()
        with tessera.duckdb() as con:  # writes quality.gate_history when it passes
            result = run_suite(con, settings, name, table, suite_name, context.run.run_id)
        yield dg.AssetCheckResult(
            passed=result.success,
            severity=dg.AssetCheckSeverity.ERROR,
            description=gate_description(result),
            metadata=suite_metadata(result),
        )
        if not result.success:
            # the step fails with what failed, on which rows of which file, instead of Dagster's
            # "1 blocking asset check failed" and its stack trace (issue 39); downstream steps
            # are not run all the same
            raise blocked(name, table, result)

    return _gate


def gx_check_name(source) -> str:
    return f"gx_raw_{source.name}"


gx_checks = [build_gx_check(source_asset_key(s), f"raw_{s.name}", gx_check_name(s)) for s in SOURCES] + [
    build_gx_check(model_key(m), f"marts_{m}", f"gx_marts_{m}") for m in GATED_MARTS
]


def gated_deps(*models: str, after_erasure: bool = True) -> list[dg.AssetKey]:
    """The dbt models an ML asset reads, plus the gated marts upstream of them (see
    orchestration.quality.gated_marts_upstream): a failing marts gate holds the asset back.

    And the erasure step: nothing of a person who asked for it is trained on, decided for or
    published (orchestration/privacy.py). An asset that already reads another asset after the
    erasure passes after_erasure=False, so the lineage has no edge that says nothing new."""
    keys = [model_key(m) for m in models]
    gated = keys + [k for k in gated_marts_upstream(models) if k not in keys]
    return [*gated, ERASURE_KEY] if after_erasure else gated
