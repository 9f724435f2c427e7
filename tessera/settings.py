"""The one place that decides the environment.

Every path, the DuckDB file, and the MLflow tracking URI come from environment variables with safe
defaults relative to the current working directory (the project root when run through `make`).
Nothing here is read at import time: call :func:`load_settings` where a value is needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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
    duckdb_lock_wait_seconds: float
    gx_max_rows: int
    seed: int
    identity_max_cluster_size: int
    identity_max_merge_rate_drift: float

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.landing_dir, self.publish_dir, self.duckdb_path.parent):
            path.mkdir(parents=True, exist_ok=True)

    def dbt_env(self) -> dict[str, str]:
        """Variables the dbt profile reads, so dbt and Python open the same database."""
        return {
            "TESSERA_DUCKDB_PATH": str(self.duckdb_path),
            "TESSERA_DUCKDB_MEMORY_LIMIT": self.duckdb_memory_limit,
            "TESSERA_DUCKDB_THREADS": str(self.duckdb_threads),
            "DO_NOT_TRACK": "1",
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
        # how long to wait for a DuckDB file another process (outside Dagster's pool) holds
        duckdb_lock_wait_seconds=float(os.environ.get("TESSERA_DUCKDB_LOCK_WAIT_SECONDS", "600")),
        gx_max_rows=int(os.environ.get("TESSERA_GX_MAX_ROWS", "2000000")),
        seed=int(os.environ.get("TESSERA_SEED", "42")),
        identity_max_cluster_size=int(os.environ.get("TESSERA_IDENTITY_MAX_CLUSTER_SIZE", "10")),
        identity_max_merge_rate_drift=float(os.environ.get("TESSERA_IDENTITY_MAX_MERGE_RATE_DRIFT", "0.05")),
    )


def mlflow_artifact_root(settings: Settings) -> Path:
    return settings.data_dir / "mlflow" / "artifacts"
