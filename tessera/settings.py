"""The one place that decides the environment.

Every path, the DuckDB file, and the MLflow tracking URI come from environment variables
(TESSERA_<FIELD>, MLFLOW_TRACKING_URI) with safe defaults relative to the current working
directory (the project root when run through `make`); every default is here. Nothing is read at
import time: call :func:`load_settings` where a value is needed. A variable that cannot be used
raises ConfigurationError naming the variable and its value.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tessera.config_files import checked
from tessera.landing.contract import SOURCES_BY_NAME
from tessera.privacy.pseudonym import DEMO_SALT, InsecureSaltError, check_salt

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
ACTIONS_FILE = PROJECT_ROOT / "config" / "actions.yml"


class ConfigurationError(ValueError):
    """The environment cannot run tessera. The message lists every problem found."""


# --- the kinds of value a variable holds; a refused one names its value --------------------------


def _one_of(*allowed: str):
    def check(value: str) -> str:
        value = value.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    return Annotated[str, AfterValidator(check)]


def _is_day(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _column_pairs(value: Any) -> Any:
    """Comma-separated "source.column" pairs of the landing contract."""
    return frozenset(p.strip() for p in value.split(",") if p.strip()) if isinstance(value, str) else value


def _in_contract(pairs: frozenset[str]) -> frozenset[str]:
    for pair in sorted(pairs):
        source, _, column = pair.partition(".")
        if source not in SOURCES_BY_NAME or column not in SOURCES_BY_NAME[source].column_names:
            raise ValueError(
                "must list source.column pairs of the landing contract (tessera/landing/contract.py); "
                f"{pair!r} is not a source.column of the landing contract"
            )
    return pairs


Location = Annotated[Path, AfterValidator(lambda p: p.expanduser().resolve())]
Share = Annotated[float, checked(lambda v: 0.0 <= v <= 1.0, "must be a share between 0 and 1")]
NonNegative = Annotated[float, checked(lambda v: v >= 0, "must not be negative")]
AtLeastOne = Annotated[int, checked(lambda v: v >= 1, "must be at least 1")]
Day = Annotated[str, checked(_is_day, "must be a date YYYY-MM-DD")]
CountryCode = Annotated[
    str,
    AfterValidator(str.strip),
    checked(
        lambda v: len(v) == 2 and v.isascii() and v.isalpha() and v.isupper(),
        "must be an ISO 3166-1 alpha-2 code in capitals (e.g. GB)",
    ),
]
ColumnPairs = Annotated[frozenset[str], NoDecode, BeforeValidator(_column_pairs), AfterValidator(_in_contract)]
Mode = _one_of("demo", "production")
UnloadedFiles = _one_of("block", "warn")
AutomationStatus = _one_of("running", "stopped")

# locations that default to a place under TESSERA_DATA_DIR when unset or set empty
_LOCATIONS = ("data_dir", "landing_dir", "truth_dir", "duckdb_path", "publish_dir", "duckdb_temp_dir")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TESSERA_", frozen=True, extra="ignore")

    data_dir: Location = Path("data")
    # the locations below default to places under data_dir (_derive_locations)
    landing_dir: Location
    truth_dir: Location
    duckdb_path: Location
    publish_dir: Location
    mlflow_tracking_uri: str = Field(validation_alias="MLFLOW_TRACKING_URI")
    mlflow_experiment: str = "tessera-recommender"
    mlflow_model_name: str = "tessera-recommender"
    duckdb_memory_limit: str = "4GB"
    duckdb_threads: int = 2
    # where DuckDB spills what does not fit in memory_limit (joins, sorts, windows over big tables)
    duckdb_temp_dir: Location
    # how long to wait for a DuckDB file another process (outside Dagster's pool) holds
    duckdb_lock_wait_seconds: float = 600
    # GE validates rows in pandas at ~20 µs a row: above this many rows a gate validates a seeded
    # sample; row-level invariants over every row are dbt tests (docs/quality.md)
    gx_max_rows: int = 250_000
    # a gate validating new files only judges them among at least this many rows
    gx_min_batch_rows: int = 20_000
    seed: int = 42
    identity_max_cluster_size: int = 10
    identity_max_merge_rate_drift: float = 0.05
    quarantine_max_rate: Share = 0.05
    # the share of each published audience held out of a campaign (tessera/publish/holdout.py)
    holdout_share: Share = 0.10
    # published snapshot versions older than this are removed (the current one never is)
    publish_retention_days: NonNegative = 30
    shop_first_day: Day = "2000-01-01"
    # a CSV line longer than this cannot be read (the file fails to load, named); a value
    # longer than max_field_chars in a readable record sends the record to quarantine
    max_line_bytes: int = 64 * 1024 * 1024
    max_field_chars: int = 100_000
    # Great Expectations Data Docs of every gate; TESSERA_GX_DOCS_DIR="" turns them off
    gx_docs_dir: Location | None
    # a gated table may shrink or grow by this share between passing runs (0.5: half to 1.5x)
    gx_max_row_count_change: float = 0.5
    # a step that failed on something transient (the DuckDB file held past the wait) is
    # retried this many times, this many seconds apart; other failures are not retried
    step_retries: int = 2
    step_retry_seconds: float = 30
    # the landing sensor leaves a file alone until it has not changed for this long
    landing_settle_seconds: float = 30
    # where the MLflow UI is served (`make ui`): Dagster metadata links each model to its run there
    mlflow_ui_url: Annotated[str, AfterValidator(lambda url: url.rstrip("/"))] = "http://127.0.0.1:5000"
    # where the Dagster UI is served (`make ui`): each MLflow run links to the Dagster run that logged it
    dagster_ui_url: Annotated[str, AfterValidator(lambda url: url.rstrip("/"))] = "http://127.0.0.1:3000"
    # `tessera serve`: where it listens, and how often it looks for a newly published version
    serve_host: str = "127.0.0.1"
    serve_port: int = 8000
    serve_reload_seconds: NonNegative = 60
    # the keys a caller of the customer routes sends (X-API-Key or Authorization: Bearer), comma
    # separated, each the key itself or "sha256:<hex digest of the key>"; none: refused outside demo
    # mode, open with a warning in demo mode (tessera/serving.py, docs/publishing.md)
    api_keys: str = ""
    # the level of the API's request log, one line per request (tessera.serving.access)
    serve_log_level: _one_of("debug", "info", "warning", "error") = "info"
    # published keys are salted hashes (tessera/privacy/pseudonym.py); the built-in salt (also when
    # the variable is empty) is refused outside demo mode. `make` targets run in demo mode; a
    # deployment sets both.
    pseudonym_salt: Annotated[str, AfterValidator(lambda salt: salt or DEMO_SALT)] = DEMO_SALT
    mode: Mode = "production"
    # campaign uplift (tessera/publish/uplift.py): days after an audience is published that count,
    # and the confidence level of the intervals
    uplift_window_days: int = 14
    uplift_confidence: float = 0.95
    # processes that render campaign messages (tessera/decisioning/render.py); 1 renders in the
    # step's own process
    render_workers: AtLeastOne = Field(default_factory=lambda: os.cpu_count() or 1)
    # the country whose calling code a national-format phone number takes when its record names
    # no country (store receipts; a CRM profile without a country); never anyone's country
    phone_default_country: CountryCode = "GB"
    # a raw gate fails when a key attribute's empty share, in a file or over the table, rises by
    # more than this since the gate's last pass (0.2: e.g. email empty in 2 % of rows, then 22 %)
    gx_max_null_share_increase: Share = 0.2
    # a file is judged on its own from this many rows (smaller files count in the table's share)
    gx_null_share_min_rows: AtLeastOne = 200
    # "source.column" pairs a source may stop sending without failing its gate (an intended change)
    gx_accepted_missing_columns: ColumnPairs = frozenset()
    # the recommender's promotion gate judges on at least this many warm users (ml/promotion.py)
    promotion_min_users: AtLeastOne = 200
    # the recommender retrains when its champion's training data is this many days older than
    # today's (0 or 1: every run); in between, runs score with the champion only (ml/rec_run.py
    # plan_refresh). A changed configuration, no champion, or force_retrain retrain at once.
    recommender_retrain_every_days: Annotated[int, checked(lambda v: v >= 0, "must not be negative")] = 7
    # a landing entry that is not loaded (another file type, a folder, a broken link...): "block"
    # stops its source's load with an error naming it, "warn" logs it and goes on; either way it is
    # in raw.load_audit with its reason (tessera/landing/loader.py, docs/landing_contract.md)
    landing_unloaded_files: UnloadedFiles = "block"
    # the action catalogue (tessera/decisioning/catalogue.py); its templates are in templates/ beside it
    actions_file: Path = ACTIONS_FILE

    @model_validator(mode="before")
    @classmethod
    def _derive_locations(cls, values: dict[str, Any]) -> dict[str, Any]:
        """A location left unset or empty lies under data_dir; TESSERA_GX_DOCS_DIR="" is None."""
        values = {k: v for k, v in values.items() if not (k in (*_LOCATIONS, "actions_file") and v == "")}
        data_dir = Path(values.get("data_dir", "data")).expanduser().resolve()
        duckdb_path = Path(values.get("duckdb_path", data_dir / "tessera.duckdb")).expanduser().resolve()
        derived = {
            "landing_dir": data_dir / "landing",
            "truth_dir": data_dir / "truth",
            "publish_dir": data_dir / "publish",
            "duckdb_temp_dir": duckdb_path.parent / "duckdb_tmp",
            "MLFLOW_TRACKING_URI": f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}",
            "gx_docs_dir": data_dir / "quality" / "data_docs",
        }
        gx_docs_off = {"gx_docs_dir": None} if values.get("gx_docs_dir") == "" else {}
        return {**derived, **values, "data_dir": data_dir, "duckdb_path": duckdb_path, **gx_docs_off}

    def duckdb_config(self) -> dict:
        """Every connection's memory, thread and spill limits (the steps' and the compaction's)."""
        return {
            "memory_limit": self.duckdb_memory_limit,
            "threads": self.duckdb_threads,
            "temp_directory": str(self.duckdb_temp_dir),
        }

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.landing_dir, self.publish_dir, self.duckdb_path.parent):
            path.mkdir(parents=True, exist_ok=True)

    def dbt_env(self) -> dict[str, str]:
        """Variables the dbt profile reads, so dbt and Python open the same database."""
        return {
            "TESSERA_DUCKDB_PATH": str(self.duckdb_path),
            "TESSERA_DUCKDB_MEMORY_LIMIT": self.duckdb_memory_limit,
            "TESSERA_DUCKDB_THREADS": str(self.duckdb_threads),
            "TESSERA_DUCKDB_TEMP_DIR": str(self.duckdb_temp_dir),
            "DO_NOT_TRACK": "1",
            # read by the quarantine_rate test and the timestamp range checks of staging
            "TESSERA_QUARANTINE_MAX_RATE": str(self.quarantine_max_rate),
            "TESSERA_SHOP_FIRST_DAY": self.shop_first_day,
            # var default_country of dbt_project.yml: national-format phones without a country
            "TESSERA_PHONE_DEFAULT_COUNTRY": self.phone_default_country,
        }


# Variables that override a location otherwise derived from TESSERA_DATA_DIR: clear them to point
# everything at one data directory (tests, benchmarks).
DERIVED_LOCATION_VARS = (
    "TESSERA_DUCKDB_PATH",
    "TESSERA_LANDING_DIR",
    "TESSERA_TRUTH_DIR",
    "TESSERA_PUBLISH_DIR",
    "MLFLOW_TRACKING_URI",
)


class AutomationSettings(BaseSettings):
    """Read when the Dagster definitions load (a schedule's cron is part of its definition)."""

    model_config = SettingsConfigDict(env_prefix="TESSERA_", frozen=True, extra="ignore")

    daily_cron: str = "0 3 * * *"
    timezone: str = Field("UTC", validation_alias="TESSERA_SCHEDULE_TIMEZONE")
    automation_default_status: AutomationStatus = "stopped"
    sensor_interval_seconds: int = 60
    # the customer view and the published outputs are overdue this long after their last update
    freshness_hours: float = 26

    @property
    def default_running(self) -> bool:
        return self.automation_default_status == "running"


RedisAppendFsync = _one_of("always", "everysec", "no")
GroupNames = Annotated[
    tuple[str, ...],
    NoDecode,
    BeforeValidator(lambda v: tuple(g.strip() for g in v.split(",") if g.strip()) if isinstance(v, str) else v),
    checked(lambda v: len(v) >= 1, "must name at least one consumer group"),
]


class RealtimeSettings(BaseSettings):
    """The real-time side (tessera/realtime, docs/realtime.md): the collector, the stream, the
    session state and the state worker. Read by `tessera serve` (the collector), `tessera realtime
    worker|redis`, and the erasure step; the batch graph runs without any of it (`realtime_configured`)."""

    model_config = SettingsConfigDict(env_prefix="TESSERA_", frozen=True, extra="ignore")

    # the Redis holding the stream, the session state and the suppression lists; a local one is
    # started by `tessera realtime redis` (`make serve`). Setting TESSERA_REDIS_URL explicitly is
    # what turns the real-time side on (collector route, erasure in Redis).
    redis_url: str = "redis://127.0.0.1:6379/0"
    # what every key of the real-time side starts with (one Redis may serve several deployments)
    realtime_prefix: str = "tessera:"
    # the Redis Stream the collector appends to and the workers read
    realtime_stream_key: str = "tessera:events"
    # a visitor's next event after this long starts a new visit (a new session id)
    session_gap_minutes: Annotated[float, checked(lambda v: v > 0, "must be positive")] = 30
    # a visitor's session state expires this long after their last event
    state_ttl_days: Annotated[float, checked(lambda v: v > 0, "must be positive")] = 30
    # a messageId seen this long ago is forgotten: a resend within the window is a duplicate
    # (counted, not appended), and a worker applies a redelivered event once within it
    dedup_ttl_days: Annotated[float, checked(lambda v: v > 0, "must be positive")] = 7
    # the state worker writes a landing file when it holds this many events, or when its oldest
    # unwritten event is this many seconds old, whichever comes first; events are acknowledged on
    # the stream only once their file is in place
    flush_max_events: AtLeastOne = 2000
    flush_max_seconds: Annotated[float, checked(lambda v: v > 0, "must be positive")] = 2.0
    # an event delivered to a worker and not acknowledged for this long is taken over by another
    # (the first one died); longer than a flush, with margin for a slow disk
    reclaim_idle_ms: AtLeastOne = 60_000
    # the consumer groups whose acknowledgement the stream waits for before it drops an event
    # (besides every group that exists on the stream): the state worker's, and the trigger
    # worker's where it runs (TESSERA_REALTIME_TRIM_GROUPS=state,triggers)
    realtime_trim_groups: GroupNames = ("state",)
    # Redis's appendfsync for the Redis `tessera realtime redis` starts: "always" (the default)
    # writes every append to disk before the collector answers 200, so a crash of Redis loses no
    # acknowledged event; "everysec" may lose up to a second of them for more throughput
    redis_appendfsync: RedisAppendFsync = "always"
    # the consent category (Segment's context.consent.categoryPreferences) without which an event
    # is not tracked, and whose revoke forgets the visitor's session state
    consent_category: Annotated[str, AfterValidator(str.strip), checked(bool, "must not be empty")] = "analytics"

    @property
    def session_gap_seconds(self) -> float:
        return self.session_gap_minutes * 60

    @property
    def state_ttl_seconds(self) -> int:
        return int(self.state_ttl_days * 86400)

    @property
    def dedup_ttl_seconds(self) -> int:
        return int(self.dedup_ttl_days * 86400)


def _variable(model: type[BaseSettings], field: str) -> str:
    alias = model.model_fields[field].validation_alias if field in model.model_fields else None
    return alias if isinstance(alias, str) else field if field.isupper() else f"TESSERA_{field.upper()}"


def _problem(model: type[BaseSettings], error: dict) -> str:
    name = _variable(model, str(error["loc"][0])) if error["loc"] else "the environment"
    if error["type"] == "value_error":
        return f"{name} {error['ctx']['error']}"
    if error["type"].startswith("int_"):
        return f"{name} must be a whole number, got {error['input']!r}"
    if error["type"].startswith("float_"):
        return f"{name} must be a number, got {error['input']!r}"
    return f"{name}: {error['msg']}, got {error['input']!r}"


def _load(model: type[BaseSettings]) -> Any:
    try:
        return model()
    except ValidationError as exc:
        raise ConfigurationError("\n".join(_problem(model, e) for e in exc.errors())) from None


def load_settings() -> Settings:
    return _load(Settings)


def load_automation_settings() -> AutomationSettings:
    return _load(AutomationSettings)


def load_realtime_settings() -> RealtimeSettings:
    return _load(RealtimeSettings)


def realtime_configured() -> RealtimeSettings | None:
    """The real-time settings when TESSERA_REDIS_URL is set (not empty), else None: then nothing
    reaches for Redis (the serving API has no collector route; the erasure leaves Redis alone)."""
    return load_realtime_settings() if os.environ.get("TESSERA_REDIS_URL", "").strip() else None


def mlflow_artifact_root(settings: Settings) -> Path:
    return settings.data_dir / "mlflow" / "artifacts"


# --- preflight: the configuration checked before any work -----------------------------------------


def _unusable_dir(path: Path, *, write: bool) -> str | None:
    """Why the directory `path` cannot be used, or None. A missing directory is usable when its
    nearest existing ancestor is a directory it can be created in (ensure_dirs creates it)."""
    if path.exists():
        if not path.is_dir():
            return "exists but is not a directory"
        wanted = os.R_OK | os.X_OK | (os.W_OK if write else 0)
        return None if os.access(path, wanted) else ("is not writable" if write else "is not readable")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"cannot be created: {ancestor} is not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"cannot be created: {ancestor} is not writable"
    return None


def _mlflow_dir(uri: str) -> Path | None:
    """The local directory an MLflow tracking URI writes into; None for a server (http...)."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent if uri != "sqlite:///:memory:" else None
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    return None if "://" in uri else Path(uri)


def preflight(settings: Settings, purpose: str = "run", publish_dir: Path | None = None) -> None:
    """Check the configuration before any work; raise ConfigurationError listing every problem.

    purpose "run" (a pipeline run, every Dagster step): the salt outside demo mode, and that the
    data, publish, DuckDB, DuckDB temp, MLflow and Great Expectations Data Docs directories exist
    or can be created and are writable, and the landing directory is readable (the pipeline only
    reads it: a read-only mount of deliveries is fine). An existing DuckDB file must be writable.
    purpose "serve" (`tessera serve`): the publish directory (or `publish_dir`) is a readable
    directory. Serving never needs the salt: it refuses snapshots by their manifest (serving.py).
    Only file-system metadata is read: cheap enough for every step (orchestration/resources.py)."""
    if purpose not in ("run", "serve"):
        raise ValueError(f"preflight purpose must be run or serve, got {purpose!r}")
    problems = []
    if purpose == "serve":
        served = publish_dir or settings.publish_dir
        if not served.is_dir():
            problems.append(f"TESSERA_PUBLISH_DIR {served} is not a directory: nothing was published there")
        elif not os.access(served, os.R_OK | os.X_OK):
            problems.append(f"TESSERA_PUBLISH_DIR {served} is not readable")
    else:
        try:
            check_salt(settings.pseudonym_salt, settings.mode)
        except InsecureSaltError as exc:
            problems.append(f"{exc} (TESSERA_MODE={settings.mode})")
        dirs = [
            ("TESSERA_DATA_DIR", settings.data_dir, True),
            ("TESSERA_LANDING_DIR", settings.landing_dir, False),
            ("TESSERA_PUBLISH_DIR", settings.publish_dir, True),
            ("TESSERA_DUCKDB_PATH's directory", settings.duckdb_path.parent, True),
            ("TESSERA_DUCKDB_TEMP_DIR", settings.duckdb_temp_dir, True),
            ("MLFLOW_TRACKING_URI's directory", _mlflow_dir(settings.mlflow_tracking_uri), True),
            ("the MLflow artifact root", mlflow_artifact_root(settings), True),
            ("TESSERA_GX_DOCS_DIR", settings.gx_docs_dir, True),
        ]
        for label, path, write in dirs:
            reason = _unusable_dir(path, write=write) if path is not None else None
            if reason:
                problems.append(f"{label} {path} {reason}")
        if settings.duckdb_path.is_dir():
            problems.append(f"TESSERA_DUCKDB_PATH {settings.duckdb_path} is a directory, not a DuckDB file")
        elif settings.duckdb_path.exists() and not os.access(settings.duckdb_path, os.R_OK | os.W_OK):
            problems.append(f"TESSERA_DUCKDB_PATH {settings.duckdb_path} is not writable")
    if problems:
        raise ConfigurationError(
            f"tessera cannot {purpose}: {len(problems)} problem(s) in its configuration (environment variables):\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


_PREFLIGHT_PASSED: set[Settings] = set()


def preflight_once(settings: Settings) -> None:
    """preflight(settings) once per process and configuration (every Dagster step asks): a
    failure is raised again on every call, since the operator may fix it meanwhile."""
    if settings not in _PREFLIGHT_PASSED:
        preflight(settings)
        _PREFLIGHT_PASSED.add(settings)
