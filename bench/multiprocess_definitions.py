"""tessera's Definitions with Dagster's default multiprocess executor, for bench/concurrency.py."""

import dagster as dg

import orchestration.definitions as tessera_definitions


def _with_multiprocess_executor() -> dg.Definitions:
    base = tessera_definitions.defs
    return dg.Definitions(
        assets=list(base.assets or []),
        asset_checks=list(base.asset_checks or []),
        jobs=list(base.jobs or []),
        resources=dict(base.resources or {}),
        executor=dg.multiprocess_executor,
    )


defs = _with_multiprocess_executor()
