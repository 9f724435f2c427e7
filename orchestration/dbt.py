"""The dbt project as Dagster assets. dbt tests surface as asset checks; dbt folders become groups."""

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
    get_asset_key_for_model,
)
from packaging import version

from orchestration.metadata import (
    PERSONAL_COLUMN_NAMES,
    markdown_safe,
    markdown_safe_schema,
    with_dbt_table_metadata,
)
from orchestration.progress import DBT_LOG_ENV
from orchestration.resources import DUCKDB_POOL, TesseraResource
from tessera.segments.rules import check_model_current
from tessera.settings import DBT_PROJECT_DIR


def _put_dbt_on_path() -> None:
    """dagster-dbt's dev-time parse runs whatever `dbt` PATH names; an un-activated virtualenv
    (`.venv/bin/dagster dev`) has dbt only beside its interpreter, and the code location then
    fails to load."""
    venv_bin = Path(sys.prefix) / "bin"
    if shutil.which("dbt") is None and (venv_bin / "dbt").exists():
        os.environ["PATH"] = f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"


_put_dbt_on_path()
dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
# In a checkout (`dagster dev`, tests) the manifest is parsed on load; a deployment runs
# `dagster-dbt project prepare-and-package` at build time instead.
dbt_project.prepare_if_dev()

# dbt models with a Great Expectations suite expectations/marts_<model>.json (orchestration/quality.py)
GATED_MARTS = ("dim_customers", "dim_products", "fct_orders", "fct_order_items", "fct_events")

COLUMN_SCHEMA = "dagster/column_schema"

GROUP_BY_FOLDER = {"staging": "staging", "intermediate": "intermediate", "marts": "marts", "quarantine": "quarantine"}


class TesseraDbtTranslator(DagsterDbtTranslator):
    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] == "source":
            return spec
        fqn = props.get("fqn", [])
        group = (
            "reference"
            if props["resource_type"] == "seed"
            else GROUP_BY_FOLDER.get(fqn[1] if len(fqn) > 2 else "", "marts")
        )
        gated = props["resource_type"] == "model" and props["name"] in GATED_MARTS
        # the YAML's `<placeholder>`s shown as written, not dropped by the UI's Markdown renderer
        metadata = dict(spec.metadata)
        if isinstance(metadata.get(COLUMN_SCHEMA), dg.TableSchema):
            metadata[COLUMN_SCHEMA] = markdown_safe_schema(metadata[COLUMN_SCHEMA])
        return spec.replace_attributes(
            group_name=group,
            owners=["team:data-platform"],
            description=markdown_safe(spec.description),
            metadata=metadata,
        ).merge_attributes(kinds={"duckdb", "great_expectations"} if gated else {"duckdb"})


@functools.cache
def dbt_manifest() -> dict[str, Any]:
    """dbt's manifest, read once per process (it is over 1 MB)."""
    return json.loads(Path(dbt_project.manifest_path).read_text())


@functools.cache
def dbt_relations() -> dict[str, tuple[str, frozenset[str]]]:
    """Each model's and seed's relation (schema.alias) and personal columns (`meta.pii`)."""
    relations = {}
    for uid, node in dbt_manifest()["nodes"].items():
        if node["resource_type"] not in ("model", "seed") or node.get("config", {}).get("materialized") == "ephemeral":
            continue
        personal = {name for name, col in node.get("columns", {}).items() if col.get("meta", {}).get("pii")}
        relations[uid] = (f"{node['schema']}.{node['alias']}", frozenset(personal | PERSONAL_COLUMN_NAMES))
    return relations


@functools.cache
def dbt_column_descriptions() -> dict[str, dict[str, str]]:
    """Each model's and seed's column descriptions from the dbt YAML (doc blocks rendered): the
    column schema of its materializations carries them, as dagster-dbt's definition-time schema
    does (DagsterDbtTranslator.get_metadata)."""
    return {
        uid: {name: col["description"] for name, col in node.get("columns", {}).items() if col.get("description")}
        for uid, node in dbt_manifest()["nodes"].items()
        if node["resource_type"] in ("model", "seed")
    }


translator = TesseraDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def _dbt_executable() -> str:
    """The dbt installed beside this interpreter, so an un-activated virtualenv still finds it."""
    candidate = Path(sys.prefix) / "bin" / "dbt"
    return str(candidate) if candidate.exists() else "dbt"


PARTIAL_PARSE = "partial_parse.msgpack"
# the env vars dbt_project/profiles.yml reads: dbt's parse state is valid for one set of them
PROFILE_ENV_VARS = (
    "TESSERA_DUCKDB_PATH",
    "TESSERA_DUCKDB_MEMORY_LIMIT",
    "TESSERA_DUCKDB_THREADS",
    "TESSERA_DUCKDB_TEMP_DIR",
)
# parse states kept per profile (the newest): one per data directory in use
KEPT_PARSE_STATES = 16


@contextlib.contextmanager
def _dbt_console(path: str | None):
    """dagster-dbt echoes each dbt line with sys.stdout.write: to the file `path` (DBT_LOG_ENV;
    appended: a run's dbt steps share it) when set, else to stdout."""
    if not path:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as out, contextlib.redirect_stdout(out):
        yield


class TesseraDbtCli(DbtCliResource):
    """dagster-dbt's resource without the fixed costs it adds to every run, which dominated a
    small incremental run (bench/incremental.py):

    - it learns dbt's version by running `dbt --version` (about 3 s of imports here); the
      executable is the one installed beside this interpreter, so dbt-core's installed version is
      the answer;
    - it builds a dbt adapter in its own process before each invocation, which tessera does not
      use;
    - it seeds each invocation's fresh target folder with target/partial_parse.msgpack but never
      refreshes that file, so once the profile differs from the one `dbt parse` saw (the DuckDB
      path is part of it) every invocation parses the whole project again (about 3 s). `stream`
      keeps the newest state back, one per profile (two runs on two data directories, as the
      test workers are, overwrote each other's), and `cli` seeds an invocation with its
      profile's. dbt still re-parses whatever changed (files, vars, env vars, the profile), as it
      does from the command line.

    dbt runs with --no-write-json: manifest.json and run_results.json in each invocation's folder
    repeat what Dagster records (the project's manifest, one event per model and test), and
    writing them cost about 0.5 s per invocation.
    """

    @functools.cached_property
    def _cli_version(self) -> version.Version:
        if Path(self.dbt_executable).parent == Path(sys.prefix) / "bin":
            return version.parse(importlib.metadata.version("dbt-core"))
        return super()._cli_version

    def _initialize_dbt_core_adapter(self, args):
        # dagster-dbt loads the profile and project in this process (importing dbt, ~2.4 s in a
        # fresh run process) only to fetch row counts and column metadata through the adapter.
        # tessera reads those itself once dbt has let go of the DuckDB file (with_dbt_table_metadata).
        return None

    def _profile_state(self) -> Path:
        """Where the parse state of the current profile (PROFILE_ENV_VARS' values) is kept."""
        profile = "\0".join(os.environ.get(name, "") for name in PROFILE_ENV_VARS)
        digest = hashlib.sha256(profile.encode()).hexdigest()[:16]
        return Path(self.project_dir) / "target" / "parse_states" / f"{digest}.msgpack"

    def cli(self, args: list[str], *, target_path: Path | None = None, context=None, **kwargs):
        target_path = target_path or self._get_unique_target_path(context=context)
        own = self._profile_state()
        if own.exists():
            # dagster-dbt copies target/partial_parse.msgpack only into a folder that lacks one;
            # a relative target path is the project's (dbt runs there)
            folder = target_path if target_path.is_absolute() else Path(self.project_dir) / target_path
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy2(own, folder / PARTIAL_PARSE)
        return super().cli(args, target_path=target_path, context=context, **kwargs)

    def stream(self, args: list[str], context: dg.AssetExecutionContext):
        """`dbt <args>` for the assets `context` selects, as dagster-dbt's stream of events."""
        invocation = self.cli(args, context=context)
        with _dbt_console(os.environ.get(DBT_LOG_ENV)):
            yield from invocation.stream()
        produced = invocation.target_path / PARTIAL_PARSE
        if produced.exists():
            own = self._profile_state()
            own.parent.mkdir(parents=True, exist_ok=True)
            for kept in (own, Path(self.project_dir) / "target" / PARTIAL_PARSE):
                # another run may be doing the same: write aside, then rename (atomic)
                staging = kept.with_name(f"{kept.name}.{uuid.uuid4().hex[:8]}")
                shutil.copy2(produced, staging)
                os.replace(staging, kept)
            states = sorted(own.parent.glob("*.msgpack"), key=_mtime, reverse=True)
            for old in states[KEPT_PARSE_STATES:]:
                old.unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    """A file's modification time; 0 for one another run has just pruned."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def dbt_build_args(full_refresh: bool = False) -> list[str]:
    # "buildable": a test runs with the invocation that builds all its parents (or their
    # descendants), so a test spanning staging and marts runs once, after the marts exist.
    # dbt unit tests check the SQL's logic on fixed inputs, not the data: they run in the test
    # suite (tests/test_dbt_unit_tests.py), not in every materialization, as dbt advises for
    # production builds (they cost about 5 s of each run on one dbt thread).
    args = ["build", "--indirect-selection", "buildable", "--exclude-resource-type", "unit_test"]
    if full_refresh:
        args.append("--full-refresh")
    return args


class DbtBuildConfig(dg.Config):
    full_refresh: bool = False


# Identity resolution (a Python asset) sits between these two halves of the dbt project:
# seeds, staging, the person records and their declared identifiers, and the incremental events
# and order lines first; the identity-dependent models and marts after.
BEFORE_IDENTITY = (
    "resource_type:seed staging int_person_records int_person_identifiers "
    "int_events int_order_lines_current int_order_lines"
)


def _dbt_half(name: str, check_rules: bool = False, **selection) -> dg.AssetsDefinition:
    """One half of the dbt project as a multi-asset; `dbt build` so tests run and gate children."""

    # without `project=`: dagster-dbt would put the DbtProject object in every asset's metadata,
    # which the UI shows as `dagster_dbt/project [DbtProject] (unserializable)`; it serves code
    # references (not enabled here) and a selectors file for selections over 200 models (this
    # project has about 40); the resource knows the project (dbt_resource below)
    @dbt_assets(
        manifest=dbt_project.manifest_path,
        dagster_dbt_translator=translator,
        name=name,
        pool=DUCKDB_POOL,
        **selection,
    )
    def _build(context: dg.AssetExecutionContext, dbt: TesseraDbtCli, tessera: TesseraResource, config: DbtBuildConfig):
        if check_rules:
            check_model_current()  # an edited rule file must be valid and compiled before it runs
        tessera.export_dbt_env()
        tessera.wait_until_free()
        events = dbt.stream(dbt_build_args(config.full_refresh), context)
        # each model's row count, schema, preview and duration, read once dbt has let go of the file
        yield from with_dbt_table_metadata(
            events, lambda: tessera.duckdb(read_only=True), dbt_relations(), dbt_column_descriptions()
        )
        if model_key(RECONCILIATION_MODEL) in context.selected_asset_keys:
            context.log_event(reconciliation_observation(tessera))

    return _build


RECONCILIATION_MODEL = "source_reconciliation"


def reconciliation_observation(tessera: TesseraResource) -> dg.AssetObservation:
    """Quarantine counts per source as metadata on quarantine/source_reconciliation, read once
    dbt has released the DuckDB file."""
    with tessera.duckdb(read_only=True) as con:
        df = con.execute(f"select * from quarantine.{RECONCILIATION_MODEL} order by source").df()
    return dg.AssetObservation(
        asset_key=model_key(RECONCILIATION_MODEL),
        metadata={
            "sources_reconciled": int(df["reconciles"].sum()),
            "sources": len(df),
            "landing_records": int(df["landing_records"].sum()),
            "quarantined_records": int(df["quarantined_records"].sum()),
            "max_quarantine_rate": float(df["quarantine_rate"].max()) if len(df) else 0.0,
            "per_source": dg.MetadataValue.md(df.to_markdown(index=False)),
        },
    )


# Seeds, staging and the person records identity resolution reads ...
dbt_staging_assets = _dbt_half("dbt_staging", select=BEFORE_IDENTITY)
# ... then the identity graph, golden record, facts and RFM.
dbt_marts_assets = _dbt_half("dbt_marts", check_rules=True, exclude=BEFORE_IDENTITY)


def view_model_keys() -> set[dg.AssetKey]:
    """dbt models materialized as views: they show new rows without being rebuilt."""
    return {
        model_key(node["name"])
        for node in dbt_manifest()["nodes"].values()
        if node["resource_type"] == "model" and node.get("config", {}).get("materialized") == "view"
    }


def model_key(name: str) -> dg.AssetKey:
    """The asset key of a dbt model, whichever half of the project builds it."""
    for assets in (dbt_staging_assets, dbt_marts_assets):
        try:
            return get_asset_key_for_model([assets], name)
        except KeyError:
            continue
    raise KeyError(f"no dbt model named {name}")


dbt_resource = TesseraDbtCli(
    project_dir=dbt_project, dbt_executable=_dbt_executable(), global_config_flags=["--no-write-json"]
)
