"""Run a job in this process as a run of the workspace's code location, as the UI would launch it.

`job.execute_in_process()` records a run without a code-location origin: the webserver lists a job's
runs by the origin's label (`__repository__@tessera`), so such runs never appeared on their job's
page nor in the Overview timeline, and could not be re-executed from the UI (dagster-io/dagster
#17707 and #19458). Dagster 1.13 has no public API for creating a run with an origin and executing
it in this process, so this module, and only this one, uses Dagster internals: the origin is read
from workspace.yaml with the loader the webserver uses, the run is created with it
(`DagsterInstance.create_run_for_job`, as `dagster job launch` does) and executed here with
`execute_run`, the function a run worker calls. docs/operations.md, "Runs from the command line".
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from dagster._core.definitions.repository_definition.valid_definitions import SINGLETON_REPOSITORY_NAME
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.workspace.load import location_origins_from_yaml_paths

from tessera.settings import PROJECT_ROOT, Settings

WORKSPACE = PROJECT_ROOT / "workspace.yaml"
LOCATION = "tessera"
# the Definitions object definitions.py holds: the attribute the code server finds in the file
DEFS_ATTRIBUTE = "defs"

GIT_SHA_TAG = "tessera/git_sha"
MODE_TAG = "tessera/mode"
DATA_DIR_TAG = "tessera/data_dir"


@dataclass(frozen=True)
class WorkspaceJob:
    """A job of the workspace's code location: how the UI names it, and how to load it here."""

    remote_origin: RemoteJobOrigin
    job: ReconstructableJob

    @property
    def name(self) -> str:
        return self.remote_origin.job_name

    def definition(self) -> dg.JobDefinition:
        return self.job.get_definition()


def workspace_job(job_name: str, workspace: Path = WORKSPACE, location: str = LOCATION) -> WorkspaceJob:
    """`job_name` of code location `location` in `workspace`, with the origin the webserver gives it."""
    origins = {o.location_name: o for o in location_origins_from_yaml_paths([str(workspace)])}
    if location not in origins:
        raise ValueError(f"{workspace} has no code location {location!r} (it has: {', '.join(sorted(origins))})")
    origin = origins[location]
    target = origin.loadable_target_origin
    if target.python_file is None:
        raise ValueError(f"code location {location!r} of {workspace} is not loaded from a python_file")
    repository = ReconstructableRepository.for_file(
        target.python_file, target.attribute or DEFS_ATTRIBUTE, target.working_directory
    )
    return WorkspaceJob(
        remote_origin=RemoteRepositoryOrigin(origin, SINGLETON_REPOSITORY_NAME).get_job_origin(job_name),
        job=repository.get_reconstructable_job(job_name),
    )


def execute_in_process(
    instance: dg.DagsterInstance,
    job: WorkspaceJob,
    run_id: str,
    run_config: Mapping,
    tags: Mapping[str, str],
) -> dg.ExecutionResult:
    """Create the run with its code-location origin and execute it in this process; returns the
    result once the run is over (a failed step does not raise: the result says it failed)."""
    definition = job.definition()
    run = instance.create_run_for_job(
        job_def=definition,
        run_id=run_id,
        run_config=dict(run_config),
        tags={**definition.run_tags, **tags},
        remote_job_origin=job.remote_origin,
        job_code_origin=job.job.get_python_origin(),
    )
    return execute_run(job.job, run, instance, raise_on_error=False)


def git_sha(root: Path = PROJECT_ROOT) -> str | None:
    """The commit checked out at `root`, or None outside a git checkout (an installed package,
    a source archive) or without git: the run is then not tagged with one."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else None


def data_dir_label(data_dir: Path, root: Path = PROJECT_ROOT, home: Path | None = None) -> str:
    """The data directory as a run tag shows it: relative to the project when inside it
    (`data`, `data/online_retail`), else with the home directory as `~` (no user name in a tag)."""
    data_dir = data_dir.resolve()
    home = (home or Path.home()).resolve()
    for base, prefix in ((root.resolve(), ""), (home, "~/")):
        if data_dir.is_relative_to(base):
            relative = data_dir.relative_to(base).as_posix()
            return prefix + relative if relative != "." else (prefix.rstrip("/") or ".")
    return data_dir.as_posix()


def provenance_tags(settings: Settings) -> dict[str, str]:
    """What a run was made from: the git commit (absent outside a git checkout), the mode
    (TESSERA_MODE) and the data directory."""
    tags = {MODE_TAG: settings.mode, DATA_DIR_TAG: data_dir_label(settings.data_dir)}
    sha = git_sha()
    if sha:
        tags[GIT_SHA_TAG] = sha
    return tags
