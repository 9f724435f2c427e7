"""How the platform runs itself: named jobs, the daily schedule, the landing-files sensor and the
freshness checks on the customer view and the published outputs.

- `daily_full_refresh` materializes the whole graph once a day (TESSERA_DAILY_CRON, UTC).
- `landing_files_sensor` compares each landing folder with what it saw at its last tick (file
  names, sizes and modification times, kept in the sensor's cursor). For the sources whose files
  changed it requests one run of everything downstream of them, except the recommender's
  training and the recommendations it publishes: retraining LightFM (an evaluation, a gate and
  up to three fits) on every file drop would cost more than it gains, so it follows the daily
  schedule or the `retrain_recommender` job. A clickstream file alone runs only up to the
  incremental `int_events` (INCREMENT_ONLY). A file still being written (changed in the last
  TESSERA_LANDING_SETTLE_SECONDS) waits for a later tick.
- Freshness checks fail when the customer view or a published output has not been updated for
  TESSERA_FRESHNESS_HOURS (default 26: a daily schedule plus slack); their own sensor runs them.
- `abandoned_runs_sensor` marks failed, and frees the `duckdb` pool slot of, runs whose process
  was killed (orchestration/recovery.py), whoever launched them: without it a run launched after a
  crash by the schedule or a sensor would wait for that slot forever.

Schedules and sensors start stopped, as Dagster's do, unless TESSERA_AUTOMATION_DEFAULT_STATUS is
`running`; a toggle in the UI is kept by the instance either way. The abandoned-runs sensor
starts running: it launches nothing, it only repairs what a crash left.
"""

import hashlib
import json
import time
import warnings
from datetime import timedelta

import dagster as dg

from orchestration.dbt import model_key, view_model_keys
from orchestration.keys import DECISIONING_GROUP, PUBLISH_GROUP, RECOMMENDER_KEY
from orchestration.publish import publish_assets
from orchestration.recovery import recover_abandoned_runs
from orchestration.sources import SOURCE_GROUP, source_asset_key
from tessera.landing.contract import SOURCES
from tessera.landing.loader import landing_state
from tessera.realtime.landing_files import LANDING_FILE_PREFIX
from tessera.settings import load_automation_settings, load_settings

ALL_JOB = "tessera_all"
CUSTOMER_VIEW_JOB = "refresh_customer_view"
RETRAIN_JOB = "retrain_recommender"
PUBLISH_JOB = "publish"

# The unified customer view and every published output: overdue when not updated in time.
FRESHNESS_MODELS = ("dim_customers", "customer_features", "customer_rfm", "customer_rule_segments")


def freshness_assets() -> list[dg.AssetKey]:
    return [model_key(m) for m in FRESHNESS_MODELS] + [a.key for a in publish_assets]


def build_freshness_checks(hours: float) -> list[dg.AssetChecksDefinition]:
    # Dagster 1.13 calls these checks superseded by FreshnessPolicy, but its new policies are a
    # preview, off by default in open source (dagster.yaml `freshness: enabled`); the checks are
    # stable, testable (tests/test_automation.py), and show pass/fail history in the UI.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*superseded.*")
        return list(
            dg.build_last_update_freshness_checks(assets=freshness_assets(), lower_bound_delta=timedelta(hours=hours))
        )


_automation = load_automation_settings()
freshness_checks = build_freshness_checks(_automation.freshness_hours)
# Freshness checks judge runs from outside: they run on their own sensor, never inside a job.
_no_freshness = dg.AssetSelection.checks(*freshness_checks)

# privacy: the erasure step belongs to the customer view (erased people leave it in the same run)
CUSTOMER_VIEW_GROUPS = (
    SOURCE_GROUP,
    "reference",
    "staging",
    "intermediate",
    "identity",
    "marts",
    "quarantine",
    "privacy",
)
customer_view = dg.AssetSelection.groups(*CUSTOMER_VIEW_GROUPS)
# the recommender's training and what publishes its lists: daily, or on demand
recommender_and_after = dg.AssetSelection.assets(RECOMMENDER_KEY).downstream()

tessera_all = dg.define_asset_job(
    ALL_JOB,
    selection=dg.AssetSelection.all() - _no_freshness,
    description="Landing files -> raw -> quality gates -> dbt customer view -> models -> published outputs.",
)
refresh_customer_view = dg.define_asset_job(
    CUSTOMER_VIEW_JOB,
    selection=customer_view - _no_freshness,
    description="Load every landing folder and rebuild the unified customer view (raw, staging, identity, "
    "golden record, facts, features, RFM, quarantine, erasures) with their gates. No model training, nothing published.",
)
retrain_recommender = dg.define_asset_job(
    RETRAIN_JOB,
    selection=dg.AssetSelection.assets(RECOMMENDER_KEY),
    description="Evaluate and retrain the LightFM recommender on the current customer view, whatever the "
    "retraining cadence says (force_retrain); the registry gate decides whether it becomes the champion. "
    "Publishes nothing.",
    config={"ops": {RECOMMENDER_KEY.to_python_identifier(): {"config": {"force_retrain": True}}}},
)
publish = dg.define_asset_job(
    PUBLISH_JOB,
    selection=dg.AssetSelection.groups(DECISIONING_GROUP, PUBLISH_GROUP) - _no_freshness,
    description="Publish scores, segments and recommendations from the current model tables, and decide "
    "and render the next best actions and the campaign outbox; each output validated before it replaces "
    "the published version.",
)
JOBS = [tessera_all, refresh_customer_view, retrain_recommender, publish]


def _status(running: bool) -> dg.DefaultScheduleStatus:
    return dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED


def _sensor_status(running: bool) -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED


daily_full_refresh = dg.ScheduleDefinition(
    name="daily_full_refresh",
    job=tessera_all,
    cron_schedule=_automation.daily_cron,
    execution_timezone=_automation.timezone,
    default_status=_status(_automation.default_running),
    description="The whole graph once a day: every source, the customer view, model training and publishing.",
)


def changed_sources(
    previous: dict[str, dict[str, list[int]]], current: dict[str, dict[str, list[int]]], now_ns: int, settle_ns: int
) -> tuple[list[str], dict[str, dict[str, list[int]]]]:
    """Sources whose files differ from the previous tick (added, changed or removed), and the
    cursor to keep. A source with a file modified within the settle time is left for a later tick:
    its previous state stays in the cursor so the change is seen again. The stream worker's files
    (named LANDING_FILE_PREFIX...) appear by an atomic rename, complete, and need no settling: with
    one every few seconds, waiting for a quiet folder would never start a run."""
    changed, cursor = [], {}
    for source, files in current.items():
        before = previous.get(source, {})
        if files == before:
            cursor[source] = files
        elif any(
            now_ns - mtime < settle_ns for name, (_, mtime) in files.items() if not name.startswith(LANDING_FILE_PREFIX)
        ):
            cursor[source] = before
        else:
            changed.append(source)
            cursor[source] = files
    return changed, cursor


def gates_of(graph, keys) -> list[dg.AssetCheckKey]:
    """The checks a run of `keys` carries: every check on those assets but the freshness checks
    (a run that names its assets would otherwise pick those up too)."""
    freshness = {c.key for d in freshness_checks for c in d.check_specs}
    wanted = set(keys)
    return sorted(
        (c for c in graph.asset_check_keys if c.asset_key in wanted and c not in freshness),
        key=lambda c: (c.asset_key.to_user_string(), c.name),
    )


# Sources processed incrementally (dbt incremental models, macros/incremental.sql): a file of
# theirs alone starts a run of its load and its incremental model, not of everything downstream.
# Views after them (fct_events) show the new rows without a rebuild; tables between them
# (stg_events) are rebuilt in the same run.
# The aggregates over the whole history (identity links from logins, features, RFM, segments,
# scores) follow the daily schedule: recomputing them for every clickstream file would rebuild
# history each time.
INCREMENT_ONLY = {"events": "int_events"}


def sensor_selection(sources: list[str]) -> dg.AssetSelection:
    """What a change in `sources` requests: for an incrementally processed source, its load and
    the tables up to its incremental model; for any other source, everything downstream. Never
    the recommender's training."""
    selection = dg.AssetSelection.assets()
    for source in (s for s in SOURCES if s.name in sources):
        downstream = dg.AssetSelection.assets(source_asset_key(source)).downstream()
        if source.name in INCREMENT_ONLY:
            boundary = dg.AssetSelection.assets(model_key(INCREMENT_ONLY[source.name])).upstream()
            downstream = (downstream & boundary) - dg.AssetSelection.assets(*view_model_keys())
        selection = selection | downstream
    return selection - recommender_and_after


@dg.sensor(
    name="landing_files_sensor",
    minimum_interval_seconds=_automation.sensor_interval_seconds,
    default_status=_sensor_status(_automation.default_running),
    # what its runs may select, shown in the UI as the sensor's target: a selection the UI can
    # print (`- _no_freshness`, a set of check keys, printed as a Python repr); each run names
    # its checks itself, without the freshness checks (gates_of)
    asset_selection=dg.AssetSelection.all() - recommender_and_after,
    description="New, changed or removed files in a landing folder -> one run of everything downstream "
    "of those sources (not the recommender's training, which is daily).",
)
def landing_files_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    settings = load_settings()
    previous = json.loads(context.cursor) if context.cursor else {}
    current = landing_state(settings.landing_dir, SOURCES)
    changed, cursor = changed_sources(previous, current, time.time_ns(), int(settings.landing_settle_seconds * 1e9))
    new_cursor = json.dumps(cursor, sort_keys=True)
    if not changed:
        waiting = sorted(s for s in current if cursor[s] != current[s])
        reason = f"files still settling in {waiting}" if waiting else "no landing folder changed"
        return dg.SensorResult(skip_reason=reason, cursor=new_cursor)
    state = json.dumps({s: cursor[s] for s in changed}, sort_keys=True)
    graph = context.repository_def.asset_graph
    selection = sensor_selection(changed).resolve(graph)
    keys = sorted((k for k in selection if graph.get(k).is_executable), key=lambda k: k.to_user_string())
    context.log.info(f"landing files changed in {changed}: {len(keys)} assets requested")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                # the same files never trigger twice, even if the cursor were lost
                run_key=hashlib.sha256(state.encode()).hexdigest()[:24],
                asset_selection=keys,
                asset_check_keys=gates_of(graph, keys),
                tags={"tessera/trigger": "landing_files", "tessera/sources": ",".join(changed)},
            )
        ],
        cursor=new_cursor,
    )


freshness_sensor = dg.build_sensor_for_freshness_checks(
    freshness_checks=freshness_checks,
    name="freshness_checks_sensor",
    minimum_interval_seconds=max(_automation.sensor_interval_seconds, 60),
    default_status=_sensor_status(_automation.default_running),
)


@dg.sensor(
    name="abandoned_runs_sensor",
    minimum_interval_seconds=_automation.sensor_interval_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs of this host still marked in progress whose process is gone (killed, out of memory, "
    "power loss) are marked failed; their duckdb pool slots, and those finished runs still hold, are freed, "
    "so later runs do not wait forever.",
)
def abandoned_runs_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    recovered = recover_abandoned_runs(context.instance, log=context.log.warning)
    if recovered:
        return dg.SkipReason(f"{len(recovered)} abandoned run(s) marked failed, their pool slots freed: {recovered}")
    return dg.SkipReason("no abandoned run")


SCHEDULES = [daily_full_refresh]
SENSORS = [landing_files_sensor, freshness_sensor, abandoned_runs_sensor]
