"""The one place that decides the environment.

Every path, the DuckDB file, and the MLflow tracking URI come from environment variables with safe
defaults relative to the current working directory (the project root when run through `make`).
Nothing here is read at import time: call :func:`load_settings` where a value is needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tessera.privacy.pseudonym import DEMO_SALT

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    landing_dir: Path
    truth_dir: Path
    duckdb_path: Path
    publish_dir: Path
    mlflow_tracking_uri: str
    mlflow_experiment: str
    mlflow_model_name: str
    duckdb_memory_limit: str
    duckdb_threads: int
    duckdb_temp_dir: Path
    duckdb_lock_wait_seconds: float
    gx_max_rows: int
    gx_min_batch_rows: int
    seed: int
    identity_max_cluster_size: int
    identity_max_merge_rate_drift: float
    quarantine_max_rate: float
    holdout_share: float
    publish_retention_days: float
    shop_first_day: str
    max_line_bytes: int
    max_field_chars: int
    gx_docs_dir: Path | None
    gx_max_row_count_change: float
    step_retries: int
    step_retry_seconds: float
    landing_settle_seconds: float
    mlflow_ui_url: str
    serve_host: str
    serve_port: int
    serve_reload_seconds: float
    pseudonym_salt: str
    mode: str
    uplift_window_days: int
    uplift_confidence: float
    render_workers: int
    phone_default_country: str
    gx_max_null_share_increase: float
    gx_null_share_min_rows: int
    gx_accepted_missing_columns: frozenset[str]
    # the recommender's promotion gate judges on at least this many warm users (ml/promotion.py)
    promotion_min_users: int = 200
    # a landing entry that is not loaded (another file type, a folder, a broken link...): "block"
    # stops its source's load with an error naming it, "warn" logs it and goes on; either way it is
    # in raw.load_audit with its reason (tessera/landing/loader.py, docs/landing_contract.md)
    landing_unloaded_files: str = "block"

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


def _path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default.resolve()


def load_settings() -> Settings:
    data_dir = _path("TESSERA_DATA_DIR", Path("data"))
    duckdb_path = _path("TESSERA_DUCKDB_PATH", data_dir / "tessera.duckdb")
    mlflow_dir = data_dir / "mlflow"
    default_uri = f"sqlite:///{mlflow_dir / 'mlflow.db'}"
    return Settings(
        data_dir=data_dir,
        landing_dir=_path("TESSERA_LANDING_DIR", data_dir / "landing"),
        truth_dir=_path("TESSERA_TRUTH_DIR", data_dir / "truth"),
        duckdb_path=duckdb_path,
        publish_dir=_path("TESSERA_PUBLISH_DIR", data_dir / "publish"),
        mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", default_uri),
        mlflow_experiment=os.environ.get("TESSERA_MLFLOW_EXPERIMENT", "tessera-recommender"),
        mlflow_model_name=os.environ.get("TESSERA_MLFLOW_MODEL_NAME", "tessera-recommender"),
        duckdb_memory_limit=os.environ.get("TESSERA_DUCKDB_MEMORY_LIMIT", "4GB"),
        duckdb_threads=int(os.environ.get("TESSERA_DUCKDB_THREADS", "2")),
        # where DuckDB spills what does not fit in memory_limit (joins, sorts, windows over big tables)
        duckdb_temp_dir=_path("TESSERA_DUCKDB_TEMP_DIR", duckdb_path.parent / "duckdb_tmp"),
        # how long to wait for a DuckDB file another process (outside Dagster's pool) holds
        duckdb_lock_wait_seconds=float(os.environ.get("TESSERA_DUCKDB_LOCK_WAIT_SECONDS", "600")),
        # GE validates rows in pandas at ~20 µs a row: above this many rows a gate validates a seeded
        # sample; row-level invariants over every row are dbt tests (docs/quality.md)
        gx_max_rows=int(os.environ.get("TESSERA_GX_MAX_ROWS", "250000")),
        # a gate validating new files only judges them among at least this many rows
        gx_min_batch_rows=int(os.environ.get("TESSERA_GX_MIN_BATCH_ROWS", "20000")),
        seed=int(os.environ.get("TESSERA_SEED", "42")),
        identity_max_cluster_size=int(os.environ.get("TESSERA_IDENTITY_MAX_CLUSTER_SIZE", "10")),
        identity_max_merge_rate_drift=float(os.environ.get("TESSERA_IDENTITY_MAX_MERGE_RATE_DRIFT", "0.05")),
        quarantine_max_rate=_rate("TESSERA_QUARANTINE_MAX_RATE", "0.05"),
        # the share of each published audience held out of a campaign (tessera/publish/holdout.py)
        holdout_share=_rate("TESSERA_HOLDOUT_SHARE", "0.10"),
        # published snapshot versions older than this are removed (the current one never is)
        publish_retention_days=_non_negative("TESSERA_PUBLISH_RETENTION_DAYS", "30"),
        shop_first_day=_day("TESSERA_SHOP_FIRST_DAY", "2000-01-01"),
        # a CSV line longer than this cannot be read (the file fails to load, named); a value
        # longer than max_field_chars in a readable record sends the record to quarantine
        max_line_bytes=int(os.environ.get("TESSERA_MAX_LINE_BYTES", str(64 * 1024 * 1024))),
        max_field_chars=int(os.environ.get("TESSERA_MAX_FIELD_CHARS", "100000")),
        # Great Expectations Data Docs of every gate; TESSERA_GX_DOCS_DIR="" turns them off
        gx_docs_dir=_optional_path("TESSERA_GX_DOCS_DIR", data_dir / "quality" / "data_docs"),
        # a gated table may shrink or grow by this share between passing runs (0.5: half to 1.5x)
        gx_max_row_count_change=float(os.environ.get("TESSERA_GX_MAX_ROW_COUNT_CHANGE", "0.5")),
        # a step that failed on something transient (the DuckDB file held past the wait) is
        # retried this many times, this many seconds apart; other failures are not retried
        step_retries=int(os.environ.get("TESSERA_STEP_RETRIES", "2")),
        step_retry_seconds=float(os.environ.get("TESSERA_STEP_RETRY_SECONDS", "30")),
        # the landing sensor leaves a file alone until it has not changed for this long
        landing_settle_seconds=float(os.environ.get("TESSERA_LANDING_SETTLE_SECONDS", "30")),
        # where the MLflow UI is served (`make ui`): Dagster metadata links each model to its run there
        mlflow_ui_url=os.environ.get("TESSERA_MLFLOW_UI_URL", "http://127.0.0.1:5000").rstrip("/"),
        # `tessera serve`: where it listens, and how often it looks for a newly published version
        serve_host=os.environ.get("TESSERA_SERVE_HOST", "127.0.0.1"),
        serve_port=int(os.environ.get("TESSERA_SERVE_PORT", "8000")),
        serve_reload_seconds=_non_negative("TESSERA_SERVE_RELOAD_SECONDS", "60"),
        # published keys are salted hashes (tessera/privacy/pseudonym.py); the built-in salt is refused
        # outside demo mode. `make` targets run in demo mode; a deployment sets both.
        pseudonym_salt=os.environ.get("TESSERA_PSEUDONYM_SALT") or DEMO_SALT,
        mode=_choice("TESSERA_MODE", "production", ("demo", "production")),
        # campaign uplift (tessera/publish/uplift.py): days after an audience is published that count,
        # and the confidence level of the intervals
        uplift_window_days=int(os.environ.get("TESSERA_UPLIFT_WINDOW_DAYS", "14")),
        uplift_confidence=float(os.environ.get("TESSERA_UPLIFT_CONFIDENCE", "0.95")),
        # processes that render campaign messages (tessera/decisioning/render.py); 1 renders in the
        # step's own process
        render_workers=_positive_int("TESSERA_RENDER_WORKERS", str(os.cpu_count() or 1)),
        # the country whose calling code a national-format phone number takes when its record names
        # no country (store receipts; a CRM profile without a country); never anyone's country
        phone_default_country=_country_code("TESSERA_PHONE_DEFAULT_COUNTRY", "GB"),
        # a raw gate fails when a key attribute's empty share, in a file or over the table, rises by
        # more than this since the gate's last pass (0.2: e.g. email empty in 2 % of rows, then 22 %)
        gx_max_null_share_increase=_rate("TESSERA_GX_MAX_NULL_SHARE_INCREASE", "0.2"),
        # a file is judged on its own from this many rows (smaller files count in the table's share)
        gx_null_share_min_rows=_positive_int("TESSERA_GX_NULL_SHARE_MIN_ROWS", "200"),
        # "source.column" pairs a source may stop sending without failing its gate (an intended change)
        gx_accepted_missing_columns=_column_list("TESSERA_GX_ACCEPTED_MISSING_COLUMNS"),
        promotion_min_users=_positive_int("TESSERA_PROMOTION_MIN_USERS", "200"),
        landing_unloaded_files=_choice("TESSERA_LANDING_UNLOADED_FILES", "block", ("block", "warn")),
    )


@dataclass(frozen=True)
class AutomationSettings:
    """Read when the Dagster definitions load (a schedule's cron is part of its definition)."""

    daily_cron: str
    timezone: str
    default_running: bool
    sensor_interval_seconds: int
    freshness_hours: float


def load_automation_settings() -> AutomationSettings:
    status = os.environ.get("TESSERA_AUTOMATION_DEFAULT_STATUS", "stopped").lower()
    if status not in ("running", "stopped"):
        raise ValueError(f"TESSERA_AUTOMATION_DEFAULT_STATUS must be running or stopped, got {status!r}")
    return AutomationSettings(
        daily_cron=os.environ.get("TESSERA_DAILY_CRON", "0 3 * * *"),
        timezone=os.environ.get("TESSERA_SCHEDULE_TIMEZONE", "UTC"),
        default_running=status == "running",
        sensor_interval_seconds=int(os.environ.get("TESSERA_SENSOR_INTERVAL_SECONDS", "60")),
        # the customer view and the published outputs are overdue this long after their last update
        freshness_hours=float(os.environ.get("TESSERA_FRESHNESS_HOURS", "26")),
    )


def _optional_path(name: str, default: Path) -> Path | None:
    if os.environ.get(name) == "":
        return None
    return _path(name, default)


def _rate(name: str, default: str) -> float:
    value = float(os.environ.get(name, default))
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a share between 0 and 1, got {value}")
    return value


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = os.environ.get(name, default).strip().lower()
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _non_negative(name: str, default: str) -> float:
    value = float(os.environ.get(name, default))
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return value


def _positive_int(name: str, default: str) -> int:
    raw = os.environ.get(name, default)
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


def _country_code(name: str, default: str) -> str:
    value = os.environ.get(name, default).strip()
    if not (len(value) == 2 and value.isascii() and value.isalpha() and value.isupper()):
        raise ValueError(f"{name} must be an ISO 3166-1 alpha-2 code in capitals (e.g. GB), got {value!r}")
    return value


def _column_list(name: str) -> frozenset[str]:
    """Comma-separated "source.column" pairs of the landing contract."""
    from tessera.landing.contract import SOURCES_BY_NAME

    pairs = frozenset(p.strip() for p in os.environ.get(name, "").split(",") if p.strip())
    for pair in sorted(pairs):
        source, _, column = pair.partition(".")
        if source not in SOURCES_BY_NAME or column not in SOURCES_BY_NAME[source].column_names:
            raise ValueError(f"{name}: {pair!r} is not a source.column of the landing contract (tessera/landing/contract.py)")
    return pairs


def _day(name: str, default: str) -> str:
    from datetime import date

    value = os.environ.get(name, default)
    try:
        date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be a date YYYY-MM-DD, got {value!r}") from exc
    return value


def mlflow_artifact_root(settings: Settings) -> Path:
    return settings.data_dir / "mlflow" / "artifacts"


# --- preflight: the configuration checked before any work -----------------------------------------


class ConfigurationError(ValueError):
    """The environment cannot run tessera. The message lists every problem found."""


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
    from tessera.privacy.pseudonym import InsecureSaltError, check_salt

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
